// The xAPI source: the same requests per learner as the project's (ceredis/sources/xapi.py):
// GET <base>statements?agent=<Agent JSON, sorted keys>&limit=100 with the xAPI version
// header, then each `more` link, resolved against the base URL.

const EXT = "https://ceredis.net/xapi/extensions/";
const EVIDENCE_TYPE = EXT + "evidence-type";
const EVIDENCE_ID = EXT + "evidence-id";
const COMPETENCY = EXT + "competency";
const CONTEXT = EXT + "context";
const VALIDATOR = EXT + "validator";
const RAW_SCORE_TEXT = EXT + "raw-score";
const COMPETENCY_ACTIVITY = "https://ceredis.net/xapi/activities/competency/";
const VOIDED = "http://adlnet.gov/expapi/verbs/voided";
const HEADERS = { "X-Experience-API-Version": "1.0.3", Accept: "application/json" };

export function xapiSource({ baseUrl, homePage = "https://ceredis.net/learners", pageSize = 100 }) {
  const base = baseUrl.endsWith("/") ? baseUrl : baseUrl + "/";

  async function page(url) {
    const res = await fetch(url, { headers: HEADERS });
    if (!res.ok) throw new Error(`GET ${url.pathname}: HTTP ${res.status}`);
    const body = await res.json();
    if (!body || !Array.isArray(body.statements)) throw new Error("not an xAPI StatementResult");
    return body;
  }

  return {
    name: base,
    async fetch(agentId) {
      const agent = agentId.startsWith("mailto:")
        ? { mbox: agentId, objectType: "Agent" }
        : { account: { homePage, name: agentId }, objectType: "Agent" };
      const url = new URL("statements", base);
      url.searchParams.set("agent", JSON.stringify(agent));
      url.searchParams.set("limit", String(pageSize));
      const statements = [];
      let body = await page(url);
      const seen = new Set();
      for (;;) {
        for (const s of body.statements) statements.push(s);
        if (!body.more) break;
        if (seen.has(body.more)) throw new Error("the LRS sent the same 'more' link twice");
        seen.add(body.more);
        body = await page(new URL(body.more, base));
      }
      return effective(statements).map((s) => toEvidence(s, homePage));
    },
    async close() {},
  };
}

function effective(statements) {
  const voided = new Set();
  const ids = new Set();
  const kept = [];
  for (const s of statements) {
    if (s.verb?.id === VOIDED && s.object?.objectType === "StatementRef") {
      voided.add(s.object.id);
      continue;
    }
    if (typeof s.id === "string") {
      if (ids.has(s.id)) continue;
      ids.add(s.id);
    }
    kept.push(s);
  }
  return kept.filter((s) => !voided.has(s.id));
}

function actorId(actor, homePage) {
  if (!actor) return undefined;
  if (actor.account && actor.account.homePage === homePage) return actor.account.name;
  return actor.mbox;
}

function rawScore(result) {
  const score = result?.score;
  if (!score) return undefined;
  let value;
  if (score.raw !== undefined) {
    const min = score.min ?? 0;
    const max = score.max ?? 100;
    value = min === 0 && max === 100 ? score.raw : ((score.raw - min) * 100) / (max - min);
  } else if (score.scaled !== undefined) {
    value = score.scaled * 100;
  }
  const text = result.extensions?.[RAW_SCORE_TEXT];
  return typeof text === "string" && text !== "" ? Number(text) : value;
}

function toEvidence(s, homePage) {
  const ext = s.context?.extensions || {};
  let competency = ext[COMPETENCY];
  if (competency === undefined && s.object?.id) {
    competency = s.object.id.startsWith(COMPETENCY_ACTIVITY)
      ? decodeURIComponent(s.object.id.slice(COMPETENCY_ACTIVITY.length))
      : s.object.id;
  }
  return {
    evidenceId: ext[EVIDENCE_ID] ?? s.id,
    agentId: actorId(s.actor, homePage),
    competencyId: competency,
    evidenceType: ext[EVIDENCE_TYPE],
    rawScore: rawScore(s.result),
    timestamp: s.timestamp,
    context: ext[CONTEXT],
    validator: ext[VALIDATOR],
  };
}
