// The file source: the same JSON Lines evidence file as the project's, read whole at
// start and grouped by learner (the seed kept its inputs in memory).

import fs from "node:fs";

export function fileSource(path) {
  const byAgent = new Map();
  for (const line of fs.readFileSync(path, "utf8").split("\n")) {
    if (!line.trim()) continue;
    const record = JSON.parse(line);
    let list = byAgent.get(record.agentId);
    if (list === undefined) byAgent.set(record.agentId, (list = []));
    list.push(record);
  }
  return {
    name: path,
    async fetch(agentId) {
      return byAgent.get(agentId) || [];
    },
    async close() {},
  };
}
