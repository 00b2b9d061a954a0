// Scoring (scoring.md §1–§10) in binary floats, as the Node.js engine did.
//
// The three rounded values (competency, domain, global score) are rounded half up to
// two decimals after removing float noise (x·100 is first rounded to 6 decimals): with
// raw scores of at most a few decimals and a few evidence per mean, the exact value of
// x·100 is never within 1e-6 of a tie unless it is one, so this gives the exact result.

import fs from "node:fs";

export const ACQUIS = "acquis";
export const PARTIEL = "partiel";
export const NON_ACQUIS = "non acquis";
export const INCOMPLET = "incomplet";

export function round2(x) {
  return Math.round(Number((x * 100).toFixed(6))) / 100;
}

/** The referential (the project's ceredis-1.1.json), with lookup tables. */
export function loadReferential(path) {
  const data = JSON.parse(fs.readFileSync(path, "utf8"));
  const weights = Object.fromEntries(data.evidenceTypes.map((t) => [t.id, t.weight]));
  const competencies = new Map();
  const aliases = new Map();
  const domainOf = new Map();
  for (const domain of data.domains) {
    for (const member of domain.competencies) domainOf.set(member.id, domain.id);
  }
  for (const c of data.competencies) {
    competencies.set(c.id, c);
    aliases.set(c.id, c.id);
    if (c.cassUuid) aliases.set(c.cassUuid, c.id);
  }
  return {
    id: data.id,
    weights,
    competencies,
    aliases,
    domains: data.domains,
    acquis: data.statusThresholds.acquis,
    partiel: data.statusThresholds.partiel,
    globalScale: data.globalScale,
    bands: data.bands,
    levelRules: data.levelRules,
  };
}

/** Check the records of one learner; return [evidence, problems]. */
export function validate(agentId, records, ref) {
  const byId = new Map();
  const problems = [];
  for (const r of records) {
    const where = r.evidenceId || "(no evidenceId)";
    const bad = (rule) => problems.push(`${where}: ${rule}`);
    if (typeof r.evidenceId !== "string" || r.evidenceId === "") { bad("evidenceId missing"); continue; }
    if (r.agentId !== agentId) { bad(`agentId ${r.agentId} is not ${agentId}`); continue; }
    const cid = ref.aliases.get(r.competencyId);
    if (cid === undefined) { bad(`unknown competency ${r.competencyId}`); continue; }
    if (!(r.evidenceType in ref.weights)) { bad(`unknown evidence type ${r.evidenceType}`); continue; }
    const raw = r.rawScore;
    if (typeof raw !== "number" || !Number.isFinite(raw) || raw < 0 || raw > 100) {
      bad(`rawScore ${raw} is not a number from 0 to 100`); continue;
    }
    if (typeof r.timestamp !== "string" || Number.isNaN(Date.parse(r.timestamp))) {
      bad(`timestamp ${r.timestamp} is not ISO-8601`); continue;
    }
    const evidence = { id: r.evidenceId, competencyId: cid, type: r.evidenceType, raw };
    const key = JSON.stringify(r);
    const seen = byId.get(r.evidenceId);
    if (seen === undefined) byId.set(r.evidenceId, { key, evidence });
    else if (seen.key !== key) bad("the same evidenceId with different content");
  }
  return [[...byId.values()].map((v) => v.evidence), problems];
}

/** The scores, statuses and level of valid evidence (scoring.md §3–§7). */
export function score(evidence, ref) {
  const byComp = new Map();
  const present = new Set();
  for (const e of evidence) {
    let types = byComp.get(e.competencyId);
    if (types === undefined) byComp.set(e.competencyId, (types = new Map()));
    const cell = types.get(e.type);
    if (cell === undefined) types.set(e.type, { sum: e.raw, count: 1 });
    else { cell.sum += e.raw; cell.count += 1; }
    present.add(e.type);
  }
  const competencies = {};
  const scores = new Map();
  const counted = new Set();
  for (const [cid, competency] of ref.competencies) {
    const types = byComp.get(cid) || new Map();
    let exact = 0;
    let count = 0;
    for (const [t, cell] of types) {
      exact += (ref.weights[t] / 100) * (cell.sum / cell.count);
      count += cell.count;
    }
    const value = round2(exact);
    scores.set(cid, value);
    const missing = competency.requiredEvidenceTypes.filter((t) => !types.has(t));
    let status;
    let reasons = [];
    if (missing.length) {
      status = INCOMPLET;
      reasons = missing.map((t) => `missing required evidence type ${t}`);
    } else {
      status = value >= ref.acquis ? ACQUIS : value >= ref.partiel ? PARTIEL : NON_ACQUIS;
      if (types.size) counted.add(cid);
    }
    competencies[cid] = {
      score: value,
      status,
      evidenceCount: count,
      evidenceTypes: [...types.keys()].sort(),
      reasons,
    };
  }
  const domainScores = {};
  let weighted = 0;
  for (const domain of ref.domains) {
    let total = 0;
    let weights = 0;
    for (const member of domain.competencies) {
      if (counted.has(member.id)) total += member.weight * scores.get(member.id);
      weights += member.weight;
    }
    domainScores[domain.id] = round2(total / weights);
    weighted += (domain.weight / 100) * domainScores[domain.id];
  }
  const ceredisScore = round2((ref.globalScale / 100) * weighted);
  const types = [...present].sort();
  const [bandLevel, cecrlLevel, levelDecision] = level(ceredisScore, domainScores, types, ref);
  return {
    status: "OK",
    ceredisScore,
    bandLevel,
    cecrlLevel,
    domainScores,
    competencies,
    evidenceTypesPresent: types,
    levelDecision,
  };
}

function level(global, domains, present, ref) {
  let index = 0;
  ref.bands.forEach((b, i) => { if (global >= b.min) index = i; });
  const decision = [];
  for (let i = index; i >= 0; i--) {
    const name = ref.bands[i].level;
    const checks = (ref.levelRules[name] || []).map((rule) => check(rule, global, domains, present));
    const failed = checks.filter((c) => !c.passed);
    decision.push({
      level: name,
      passed: failed.length === 0,
      checks,
      reasons: failed.map((c) => `${name} refused: ${c.detail}`),
    });
    if (!failed.length) return [ref.bands[index].level, name, decision];
  }
  throw new Error("the lowest band carries no rule, so the cascade always grants");
}

function check(rule, global, domains, present) {
  if (rule.kind === "minScore") {
    const passed = global >= rule.value;
    return { rule: rule.kind, passed, detail: `ceredisScore ${global.toFixed(2)} ${passed ? "≥" : "<"} ${rule.value}` };
  }
  if (rule.kind === "domainMinimum") {
    const value = domains[rule.domain];
    const passed = value >= rule.value;
    return { rule: rule.kind, passed, detail: `${rule.domain} ${value.toFixed(2)} ${passed ? "≥" : "<"} ${rule.value}` };
  }
  const missing = rule.types.filter((t) => !present.includes(t));
  return {
    rule: rule.kind,
    passed: missing.length === 0,
    detail: missing.length ? missing.map((t) => `no ${t} evidence`).join(", ") : `${rule.types.join(", ")} evidence present`,
  };
}
