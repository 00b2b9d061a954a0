// The seed's batch (controlled-parallelism.md §4): runWithConcurrency over the learner
// ids, a JSON report of every result, a summary table.
//
//   node src/index.js --agents-file ids.txt --database postgresql://… \
//        (--xapi http://host/xAPI/ | --file cohort.jsonl) [--concurrency N] \
//        [--referential ceredis-1.1.json] [--report-dir DIR] [--json]
//
// Concurrency: --concurrency, else CEREDIS_MAX_WORKERS, else 4 (as the seed).

import fs from "node:fs";
import path from "node:path";
import { parseArgs } from "node:util";
import { fileURLToPath } from "node:url";

import { runWithConcurrency } from "./engine/workerPool.js";
import { runCeredisForAgent } from "./engine/ceredisRunner.js";
import { loadReferential } from "./engine/scoring.js";
import { openStore } from "./db.js";
import { fileSource } from "./sources/file.js";
import { xapiSource } from "./sources/xapi.js";

const HERE = path.dirname(fileURLToPath(import.meta.url));
const DEFAULT_REFERENTIAL = path.resolve(HERE, "../../../../ceredis/data/ceredis-1.1.json");

async function runBatch(agentIds, config, concurrency, reportDir, asJson) {
  const startedAt = new Date();

  const results = await runWithConcurrency(
    agentIds,
    (agentId) => runCeredisForAgent(agentId, config),
    concurrency
  );

  const report = {
    startedAt: startedAt.toISOString(),
    finishedAt: new Date().toISOString(),
    total: agentIds.length,
    concurrency,
    ok: results.filter((r) => r?.status === "OK").length,
    skipped: results.filter((r) => r?.status === "SKIPPED").length,
    failed: results.filter((r) => r?.status === "ERROR").length,
    details: results,
  };

  fs.writeFileSync(
    path.join(reportDir, `ceredis_batch_report_${Date.now()}.json`),
    JSON.stringify(report, null, 2)
  );

  const summary = {
    total: report.total,
    ok: report.ok,
    skipped: report.skipped,
    failed: report.failed,
    concurrency: report.concurrency,
  };
  if (asJson) {
    console.log(JSON.stringify(summary));
  } else {
    console.log("✔ Batch CEREDIS terminé");
    console.table(summary);
  }
  return report;
}

async function main() {
  const { values } = parseArgs({
    options: {
      "agents-file": { type: "string" },
      database: { type: "string" },
      xapi: { type: "string" },
      file: { type: "string" },
      concurrency: { type: "string" },
      referential: { type: "string", default: DEFAULT_REFERENTIAL },
      "report-dir": { type: "string", default: "." },
      json: { type: "boolean", default: false },
    },
  });
  if (!values["agents-file"] || !values.database || !(values.xapi || values.file)) {
    console.error("usage: node src/index.js --agents-file F --database URL (--xapi URL | --file F) [--concurrency N]");
    return 2;
  }
  const concurrency =
    Number(values.concurrency) || Number(process.env.CEREDIS_MAX_WORKERS) || 4;
  const agentIds = fs.readFileSync(values["agents-file"], "utf8").split("\n").filter((l) => l.trim());
  const source = values.xapi ? xapiSource({ baseUrl: values.xapi }) : fileSource(values.file);
  const store = await openStore(values.database, concurrency);
  const referential = loadReferential(values.referential);
  try {
    const report = await runBatch(
      agentIds, { source, referential, store }, concurrency, values["report-dir"], values.json
    );
    return report.failed ? 1 : 0;
  } finally {
    await store.close();
    await source.close();
  }
}

main().then(
  (code) => { process.exitCode = code; },
  (err) => { console.error(`seed port: ${err.message}`); process.exitCode = 2; }
);
