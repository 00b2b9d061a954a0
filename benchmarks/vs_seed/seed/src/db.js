// PostgreSQL: one pool of at most `concurrency` connections; one upsert per learner,
// each its own (autocommit) transaction — no global lock, no ledger. The columns have
// the types of the project's ceredis_result (json, numeric(6,2)), and its compression
// (lz4, which the project asks of its sessions, where the server's default is pglz).

import pg from "pg";

const SCHEMA = `
CREATE TABLE IF NOT EXISTS seed_result (
  agent_id      text PRIMARY KEY,
  status        text NOT NULL,
  ceredis_score numeric(6,2),
  band_level    text,
  cecrl_level   text,
  domain_scores json COMPRESSION lz4,
  competencies  json COMPRESSION lz4,
  result        json COMPRESSION lz4 NOT NULL,
  error         text,
  updated_at    timestamptz NOT NULL
)`;

const UPSERT = `
INSERT INTO seed_result (agent_id, status, ceredis_score, band_level, cecrl_level,
                         domain_scores, competencies, result, error, updated_at)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, now())
ON CONFLICT (agent_id) DO UPDATE SET
  status = EXCLUDED.status, ceredis_score = EXCLUDED.ceredis_score,
  band_level = EXCLUDED.band_level, cecrl_level = EXCLUDED.cecrl_level,
  domain_scores = EXCLUDED.domain_scores, competencies = EXCLUDED.competencies,
  result = EXCLUDED.result, error = EXCLUDED.error, updated_at = EXCLUDED.updated_at`;

export async function openStore(connectionString, concurrency) {
  const pool = new pg.Pool({ connectionString, max: concurrency });
  await pool.query(SCHEMA);
  return {
    async upsert(r) {
      const json = (v) => (v === undefined ? null : JSON.stringify(v));
      await pool.query(UPSERT, [
        r.agentId,
        r.status,
        r.ceredisScore ?? null,
        r.bandLevel ?? null,
        r.cecrlLevel ?? null,
        json(r.domainScores),
        json(r.competencies),
        JSON.stringify(r),
        r.error ?? null,
      ]);
    },
    close: () => pool.end(),
  };
}
