// One learner, as the seed did it: fetch → score → upsert, awaited in turn.

import { score, validate } from "./scoring.js";

export const ENGINE_VERSION = "seed-port-1.0.0";

export async function runCeredisForAgent(agentId, config) {
  const { source, referential, store } = config;
  const records = await source.fetch(agentId);
  const stamp = { agentId, referentialVersion: referential.id, engineVersion: ENGINE_VERSION };
  let result;
  if (records.length === 0) {
    result = { ...stamp, status: "SKIPPED", reason: "no evidence" };
  } else {
    const [evidence, problems] = validate(agentId, records, referential);
    result = problems.length
      ? { ...stamp, status: "ERROR", error: `${problems.length} invalid evidence: ${problems.join("; ")}` }
      : { ...stamp, ...score(evidence, referential) };
  }
  await store.upsert(result);
  return {
    agentId,
    status: result.status,
    ceredisScore: result.ceredisScore ?? null,
    cecrlLevel: result.cecrlLevel ?? null,
  };
}
