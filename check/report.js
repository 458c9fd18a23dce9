'use strict'

// The end-of-run summary: what ran, what was injected, what the calls answered, and every
// violation with the seed that reproduces the schedule.

const { PROMISES } = require('./history')
const { FAULT_KINDS } = require('./faults')

function tally(items, keyOf) {
  const counts = {}
  for (const item of items) {
    const key = keyOf(item)
    counts[key] = (counts[key] ?? 0) + 1
  }
  return counts
}

function summarize(records, result, { seed, seconds }) {
  const grants = records.filter((r) => r.type === 'grant')
  const faults = {}
  for (const kind of FAULT_KINDS) faults[kind] = { started: 0, skipped: 0 }
  for (const f of records.filter((r) => r.type === 'fault')) faults[f.kind][f.skipped ? 'skipped' : 'started']++
  const calls = {}
  for (const c of records.filter((r) => r.type === 'call')) {
    calls[c.op] ??= { total: 0, outcomes: {} }
    calls[c.op].total++
    const outcome = c.ok ? 'ok' : c.code
    calls[c.op].outcomes[outcome] = (calls[c.op].outcomes[outcome] ?? 0) + 1
  }
  const violationsByPromise = {}
  for (const id of Object.keys(PROMISES)) violationsByPromise[id] = 0
  for (const v of result.violations) violationsByPromise[v.promise]++
  return {
    seed, seconds,
    grants: grants.length,
    grantsByTopologyAndKind: tally(grants, (g) => `${g.topology} ${g.kind}`),
    faults,
    calls,
    clientsKilled: records.filter((r) => r.type === 'client-kill').length,
    clientsCrashed: records.filter((r) => r.type === 'client-exit').length,
    scenarioErrors: records.filter((r) => r.type === 'scenario-error').length,
    violationsByPromise,
    violations: result.violations.length,
    excused: result.excused.length,
    unprotectedWrites: result.unprotected,
  }
}

function print(summary, result, { historyDir, perPromise = 4 }) {
  const lines = []
  lines.push(`relock check: ${summary.seconds} s, seed ${summary.seed}`)
  lines.push(`grants: ${summary.grants}`)
  for (const [what, n] of Object.entries(summary.grantsByTopologyAndKind).sort()) lines.push(`  ${what.padEnd(28)} ${n}`)
  lines.push('faults (started / skipped):')
  for (const [kind, { started, skipped }] of Object.entries(summary.faults)) lines.push(`  ${kind.padEnd(28)} ${started} / ${skipped}`)
  lines.push(`client processes killed: ${summary.clientsKilled}, died on their own: ${summary.clientsCrashed}, scenario errors: ${summary.scenarioErrors}`)
  lines.push('calls:')
  for (const [op, { total, outcomes }] of Object.entries(summary.calls).sort()) {
    lines.push(`  ${op.padEnd(18)} ${String(total).padStart(6)}  ${Object.entries(outcomes).map(([o, n]) => `${o} ${n}`).join(', ')}`)
  }
  lines.push('probes (took / bound, outcome):')
  for (const probe of result.history.records.filter((r) => r.type === 'probe')) {
    const bound = probe.bound == null ? '-' : `${probe.bound} ms`
    lines.push(`  ${probe.name.padEnd(60)} ${String(Math.round(probe.took)).padStart(5)} ms / ${bound}, ${probe.outcome}`)
  }
  lines.push('violations by promise:')
  for (const [id, n] of Object.entries(summary.violationsByPromise)) lines.push(`  ${String(id).padEnd(9)} ${PROMISES[id].padEnd(32)} ${n}`)
  lines.push(`excused as documented limits: ${summary.excused}; writes whose lease ran out during the write (not counted): ${summary.unprotectedWrites}`)
  const byPromise = new Map()
  for (const v of result.violations) {
    if (!byPromise.has(v.promise)) byPromise.set(v.promise, [])
    byPromise.get(v.promise).push(v)
  }
  for (const [id, list] of byPromise) {
    lines.push('')
    lines.push(`VIOLATION of promise ${id} (${PROMISES[id]}): ${list.length} found, seed ${summary.seed} (reproduce the schedule: npm run check -- --seed ${summary.seed} --seconds ${summary.seconds})`)
    for (const v of list.slice(0, perPromise)) {
      lines.push(`  - ${v.summary}`)
      for (const g of v.grants ?? []) lines.push(`      grant ${JSON.stringify(g)}`)
      if (v.tokens) lines.push(`      tokens ${v.tokens.join(', ')}`)
      if (v.faults && v.faults.length) lines.push(`      faults ${JSON.stringify(v.faults.slice(0, 6))}${v.faults.length > 6 ? ` (+${v.faults.length - 6})` : ''}`)
    }
    if (list.length > perPromise) lines.push(`  … ${list.length - perPromise} more (all of them in --json)`)
  }
  if (result.excused.length) {
    lines.push('')
    lines.push(`documented limits seen (not counted), e.g.:`)
    for (const v of result.excused.slice(0, 2)) lines.push(`  - [${v.promise}] ${v.summary} — ${v.reason}`)
  }
  lines.push('')
  lines.push(summary.violations === 0 ? `no violations (seed ${summary.seed})` : `${summary.violations} violation(s) (seed ${summary.seed})`)
  if (historyDir && summary.violations > 0) lines.push(`history: ${historyDir}`)
  return lines.join('\n')
}

module.exports = { summarize, print }
