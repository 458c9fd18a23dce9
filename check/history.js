'use strict'

// Verification: pure functions over the recorded history (the records of every client
// environment and of the orchestrator). Each check returns violations; a violation carries
// the shortest excerpt that shows it (the records involved and the faults active meanwhile).
// Findings that the README documents as known limits (a host restarted without persistence
// forgets its locks and fences) are returned as `excused` instead, with the reason.

const B = require('./bounds')

const PROMISES = {
  1: 'mutual exclusion',
  2: 'fences only grow',
  3: 'loss reported on time',
  4: 'scopes end holds',
  5: 'waiting costs little',
  6: 'no ghost locks',
  7: 'bounded calls',
  8: 'operator calls touch only locks',
  9: 'fair waiters: a dead one does not block, none starves',
  register: 'fenced register and counter',
}

const HANDLE_KINDS = new Set(['acquire', 'acquire-fair', 'using', 'using-nested', 'acquire-nested', 'rw-read', 'rw-write', 'semaphore', 'multi'])
// Grants that others may share: readers with readers, holders of permits up to the permits.
const SHARED_KINDS = new Set(['rw-read', 'semaphore'])
const TRANSPORT_CODES = new Set(['ERR_RELOCK_TIMEOUT', 'ERR_RELOCK_CONNECTION', 'ERR_RELOCK_NO_QUORUM', 'ERR_RELOCK_CLOSED'])
const BOUNDED_OPS = new Set(['lock', 'lockWithValidity', 'lock-multi', 'unlock', 'extend', 'release', 'inspect', 'close'])

const processOf = (who) => who.replace(/t\d+$/, '')
const quorum = (hosts) => Math.floor(hosts / 2) + 1

/** Indexes the raw records once for every check. */
function indexHistory(records) {
  const h = {
    records, grants: new Map(), byCid: new Map(), faults: [], kills: new Map(), busy: new Map(), lastSeen: new Map(),
    run: records.find((r) => r.type === 'run-start') ?? { t0: 0, hostsPerTopology: {}, actorsPerTopology: 0 },
  }
  const grantOf = (gid) => h.grants.get(gid)
  for (const r of records) {
    const t = r.t ?? r.end ?? r.start
    if (r.who && typeof t === 'number') h.lastSeen.set(r.who, Math.max(h.lastSeen.get(r.who) ?? -Infinity, t))
    switch (r.type) {
      case 'grant':
        h.grants.set(r.gid, { ...r, who: r.who, valids: [], invalidAt: null, lost: [], releaseCall: null, windowEnds: [], release: null })
        if (r.cid) h.byCid.set(r.cid, r.gid)
        break
      case 'fault':
        h.faults.push(r)
        break
      case 'client-kill':
        h.kills.set(r.process, r.t)
        break
      case 'block':
      case 'lag':
        if (!h.busy.has(r.who)) h.busy.set(r.who, [])
        h.busy.get(r.who).push([r.start, r.end])
        break
    }
  }
  for (const r of records) {
    const grant = r.gid && grantOf(r.gid)
    if (r.type === 'obs' && grant && r.valid) grant.valids.push(r.t)
    else if (r.type === 'invalid' && grant) {
      grant.invalidAt = grant.invalidAt === null ? r.t : Math.min(grant.invalidAt, r.t)
      if (r.lastValidAt != null) grant.valids.push(r.lastValidAt)
    } else if (r.type === 'release-call' && grant) {
      if (grant.releaseCall === null || r.t < grant.releaseCall) grant.releaseCall = r.t
      if (r.lastValidAt != null) grant.valids.push(r.lastValidAt)
    } else if (r.type === 'window' && grant) grant.windowEnds.push(r.end)
    else if (r.type === 'lost') {
      const target = grant || (r.cid && grantOf(h.byCid.get(r.cid)))
      if (target) target.lost.push(r)
      else if (r.via === 'event') {
        for (const g of h.grants.values()) if (g.who === r.who && g.topology === r.topology && g.key === r.key && g.fence === r.fence) g.lost.push(r)
      }
    } else if (r.type === 'call' && r.op === 'release' && grant) grant.release = r
  }
  return h
}

/** Milliseconds of [from, to] during which `who`'s event loop was blocked or lagging. */
function busyWithin(h, who, from, to) {
  let total = 0
  for (const [start, end] of h.busy.get(who) ?? []) total += Math.max(0, Math.min(end, to) - Math.max(start, from))
  return total
}

function faultsDuring(h, from, to, topology) {
  return h.faults.filter((f) => f.start <= to && (f.end ?? f.start) >= from && (topology === undefined || f.topology === undefined || f.topology === topology))
}

/**
 * When the hold behind a grant began: its call, or for a reentrant grant the call of the outer
 * grant whose lock it shares.
 */
function holdStart(h, g) {
  if (g.reentrant) {
    const outer = [...h.grants.values()].find((o) => o.token === g.token && !o.reentrant)
    if (outer) return outer.callStart ?? outer.start
  }
  return g.callStart ?? g.start
}

/** Restarts that forgot data (no persistence) on a host of `topology`, killed within [from, to]. */
function forgettingRestarts(h, topology, from, to) {
  return h.faults.filter((f) => f.kind === 'kill-restart' && !f.skipped && f.topology === topology && f.start >= from && f.start <= to)
}

const rel = (h, t) => (t == null ? null : Math.round((t - h.run.t0) * 10) / 10)

function describeGrant(h, g) {
  const described = { who: g.who, kind: g.kind, token: g.token, fence: g.fence, start: rel(h, g.start), end: rel(h, g.windowEnd ?? null), callStart: rel(h, g.callStart), ttl: g.ttl, maxHold: g.maxHold }
  if (g.reentrant) {
    // A reentrant grant lives on its outer hold: show how that one was taken.
    const outer = [...h.grants.values()].find((o) => o.token === g.token && !o.reentrant)
    if (outer) described.outer = { kind: outer.kind, start: rel(h, outer.start), ttl: outer.ttl, maxHold: outer.maxHold }
  }
  return described
}

function describeFaults(h, faults) {
  return faults.map((f) => ({ kind: f.kind, target: f.topology ? `${f.topology}/${f.host}` : `p${f.proc}t${f.thread ?? ''}`, start: rel(h, f.start), end: rel(h, f.end), ...(f.direction ? { direction: f.direction } : {}) }))
}

/** The validity window of every grant: [resolve, the holder's last reason to believe it held]. */
function windows(h) {
  const result = []
  for (const g of h.grants.values()) {
    let end
    // A handle never seen valid (delivered already lost, its signal aborted) has no window;
    // it only shows that a grant happened somewhere in [callStart, start].
    if (HANDLE_KINDS.has(g.kind)) {
      if (!g.valids.length) {
        result.push({ ...g, windowEnd: null, neverValid: true })
        continue
      }
      end = Math.max(...g.valids)
    } else end = Math.max(g.windowEnd, ...g.windowEnds)
    if (g.releaseCall !== null) end = Math.min(end, g.releaseCall)
    if (end < g.start) continue
    result.push({ ...g, windowEnd: end })
  }
  return result.flatMap(perKey)
}

/** A multi-key grant counts as one grant of each of its keys, with that key's fence. */
function perKey(g) {
  if (!g.keys) return [g]
  return g.keys.map((key, index) => ({ ...g, key, fence: g.fences[index] }))
}

function groupBy(items, keyOf) {
  const groups = new Map()
  for (const item of items) {
    const key = keyOf(item)
    if (!groups.has(key)) groups.set(key, [])
    groups.get(key).push(item)
  }
  return groups
}

/** Promise 1: no two grants' windows of one key overlap (reentrant grants share a token). */
function checkMutualExclusion(h) {
  const out = { violations: [], excused: [] }
  const exclusive = windows(h).filter((g) => g.kind !== 'semaphore')
  for (const [id, all] of groupBy(exclusive, (g) => `${g.topology}/${g.key}`)) {
    const list = all.filter((g) => !g.neverValid).sort((a, b) => a.start - b.start)
    // A grant that was never seen valid happened within [callStart, start]: a conflict for
    // certain only when another holder's window covers all of that.
    for (const g of all.filter((w) => w.neverValid)) {
      for (const a of list) {
        if (a.token === g.token || a.start > g.callStart || a.windowEnd < g.start) continue
        if (a.kind === 'rw-read' && g.kind === 'rw-read') continue
        const finding = {
          promise: 1, topology: g.topology, key: g.key,
          summary: `${id}: ${g.who} was granted between ${rel(h, g.callStart)} and ${rel(h, g.start)} ms while ${a.who} held it all along (valid until ${rel(h, a.windowEnd)} ms)`,
          grants: [describeGrant(h, a), describeGrant(h, g)],
          faults: describeFaults(h, faultsDuring(h, a.start, g.start)),
        }
        if (forgettingRestarts(h, g.topology, holdStart(h, a), g.start).length) out.excused.push({ ...finding, reason: 'a host restarted without persistence and forgot the lock (README, Known limits)' })
        else out.violations.push(finding)
      }
    }
    let active = []
    for (const g of list) {
      active = active.filter((a) => a.windowEnd > g.start)
      for (const a of active) {
        if (a.token === g.token) continue
        if (a.kind === 'rw-read' && g.kind === 'rw-read') continue
        const finding = {
          promise: 1, topology: g.topology, key: g.key,
          summary: `${id}: ${g.who} was granted at ${rel(h, g.start)} ms while ${a.who} still held it (valid until ${rel(h, a.windowEnd)} ms)`,
          grants: [describeGrant(h, a), describeGrant(h, g)],
          faults: describeFaults(h, faultsDuring(h, a.callStart ?? a.start, g.start)),
        }
        const forgot = forgettingRestarts(h, g.topology, holdStart(h, a), g.start)
        if (forgot.length) out.excused.push({ ...finding, reason: 'a host restarted without persistence and forgot the lock (README, Known limits)' })
        else out.violations.push(finding)
      }
      active.push(g)
    }
  }
  return out
}

/**
 * Promise 1 for semaphores: at no moment do the windows of one semaphore's holders add up to
 * more permits than it has.
 */
function checkPermits(h) {
  const out = { violations: [], excused: [] }
  const held = windows(h).filter((g) => g.kind === 'semaphore' && !g.neverValid)
  for (const [id, list] of groupBy(held, (g) => `${g.topology}/${g.key}`)) {
    const events = list.flatMap((g) => [[g.start, g.permits, g], [g.windowEnd, -g.permits, g]]).sort((a, b) => a[0] - b[0] || a[1] - b[1])
    let inUse = 0
    const inside = new Set()
    for (const [t, change, g] of events) {
      inUse += change
      if (change < 0) {
        inside.delete(g)
        continue
      }
      inside.add(g)
      if (inUse <= g.limit) continue
      const finding = {
        promise: 1, topology: g.topology, key: g.key,
        summary: `${id}: ${inUse} permits in use at ${rel(h, t)} ms, of ${g.limit} (${[...inside].map((o) => `${o.who} ${o.permits}`).join(', ')})`,
        grants: [...inside].map((o) => describeGrant(h, o)),
        faults: describeFaults(h, faultsDuring(h, Math.min(...[...inside].map((o) => o.callStart ?? o.start)), t)),
      }
      if (forgettingRestarts(h, g.topology, Math.min(...[...inside].map((o) => o.callStart ?? o.start)), t).length) out.excused.push({ ...finding, reason: 'a host restarted without persistence and forgot the holders (README, Known limits)' })
      else out.violations.push(finding)
    }
  }
  return out
}

/**
 * Promise 2: fences grow with grants. Order is only certain when one grant resolved before
 * the other call even started, so only such pairs are compared.
 */
function checkFences(h) {
  const out = { violations: [], excused: [] }
  // A reentrant grant is no new grant: it carries the fence its outer hold got earlier.
  for (const r of h.records) {
    if (r.type === 'probe' && r.promise === 2 && r.outcome === 'did not grow') {
      out.violations.push({ promise: 2, topology: r.topology, key: r.key, summary: `probe "${r.name}": fences ${r.fences.join(', ')} (the last must be above the one before)` })
    }
  }
  const fenced = [...h.grants.values()].flatMap(perKey).filter((g) => g.fence != null && !g.reentrant)
  for (const [id, list] of groupBy(fenced, (g) => `${g.topology}/${g.key}`)) {
    const byStart = [...list].sort((a, b) => a.start - b.start)
    const byCallStart = [...list].sort((a, b) => a.callStart - b.callStart)
    let next = 0
    let highest = null
    for (const g of byCallStart) {
      while (next < byStart.length && byStart[next].start < g.callStart) {
        const earlier = byStart[next++]
        if (highest === null || earlier.fence > highest.fence) highest = earlier
      }
      if (highest === null || highest.token === g.token || g.fence > highest.fence) continue
      const finding = {
        promise: 2, topology: g.topology, key: g.key,
        summary: `${id}: fence ${g.fence} (${g.who}, granted at ${rel(h, g.start)} ms) is not above fence ${highest.fence} granted earlier at ${rel(h, highest.start)} ms`,
        grants: [describeGrant(h, highest), describeGrant(h, g)],
        faults: describeFaults(h, faultsDuring(h, highest.callStart, g.start)),
      }
      if (forgettingRestarts(h, g.topology, highest.callStart, g.start).length) out.excused.push({ ...finding, reason: 'a host restarted without persistence and forgot its fence counter (README, Fencing tokens)' })
      else out.violations.push(finding)
    }
  }
  return out
}

/** Promise 3: once isValid() turned false while held, the loss is reported within the tolerance. */
function checkLossReports(h) {
  const out = { violations: [], excused: [] }
  for (const g of h.grants.values()) {
    if (!HANDLE_KINDS.has(g.kind) || g.invalidAt === null) continue
    if (g.releaseCall !== null && g.releaseCall < g.invalidAt) continue
    const f = g.invalidAt
    const reported = g.lost.length ? Math.min(...g.lost.map((r) => r.t)) : null
    // Time this thread's loop was blocked or lagging delays the report by as much.
    let deadline = f + B.LOSS_REPORT_TOLERANCE_MS
    for (let previous = -Infinity; deadline > previous + 0.001;) {
      previous = deadline
      deadline = f + B.LOSS_REPORT_TOLERANCE_MS + busyWithin(h, g.who, f - B.LOSS_REPORT_TOLERANCE_MS, deadline)
    }
    if (reported !== null && reported <= deadline) continue
    const killed = h.kills.get(processOf(g.who))
    if (killed !== undefined && killed <= deadline) continue
    if (reported === null && (h.lastSeen.get(g.who) ?? -Infinity) <= deadline) continue
    const lastValid = g.valids.length ? Math.max(...g.valids) : null
    out.violations.push({
      promise: 3, topology: g.topology, key: g.key,
      summary: reported === null
        ? `${g.topology}/${g.key}: ${g.who} saw isValid() === false at ${rel(h, f)} ms and the loss was never reported${lastValid > f ? `; isValid() was true again at ${rel(h, lastValid)} ms (a lease that ran out came back)` : ''}`
        : `${g.topology}/${g.key}: ${g.who} saw isValid() === false at ${rel(h, f)} ms; the loss was reported ${Math.round(reported - f)} ms later (${g.lost.map((r) => `${r.via} ${r.code}`).join(', ')})`,
      grants: [describeGrant(h, g)],
      faults: describeFaults(h, faultsDuring(h, lastValid ?? g.start, reported ?? f + 100, g.topology)),
    })
  }
  return out
}

/** Promise 4: after a using scope, none of its tokens holds the key, and its handles are invalid. */
function checkScopes(h) {
  const out = { violations: [], excused: [] }
  for (const r of h.records) {
    if (r.type !== 'scope-check') continue
    const hosts = h.run.hostsPerTopology[r.topology] ?? 1
    const problems = []
    if (r.validHandles > 0) problems.push(`${r.validHandles} handle(s) of the scope still answer isValid() === true`)
    if (r.phase === 'late' && r.held.length >= quorum(hosts)) problems.push(`a scope token still holds the key on host(s) ${r.held.join(', ')} a ttl after the scope ended`)
    if (r.phase === 'late' && r.held.length > 0 && r.held.length < quorum(hosts) && !problems.length) {
      // An attempt that reached a minority host late (stalled or paused) can set the key after
      // the scope's release to that host was lost with its connection; nothing renews it, it
      // counts for no majority, and it expires by its ttl.
      out.excused.push({
        promise: 4, topology: r.topology, key: r.key,
        summary: `${r.topology}/${r.key}: a scope token holds a minority (host(s) ${r.held.join(', ')}) a ttl after the scope ended`,
        reason: 'a late attempt reached a stalled minority host after the release to it was lost with its connection; no handle renews it and it expires by its ttl',
      })
      continue
    }
    if (r.phase === 'soon' && r.releaseOk && r.held.length >= quorum(hosts)) problems.push(`the scope ended with a successful release but its token still holds the key on host(s) ${r.held.join(', ')}`)
    if (!problems.length) continue
    out.violations.push({
      promise: 4, topology: r.topology, key: r.key,
      summary: `${r.topology}/${r.key} (${r.variant}, checked ${r.phase} at ${rel(h, r.t)} ms by ${r.who}): ${problems.join('; ')}`,
      tokens: r.tokens,
      faults: describeFaults(h, faultsDuring(h, r.t - 3000, r.t, r.topology)),
    })
  }
  return out
}

/** The waiting acquires of a topology as [start, end] intervals (a killed waiter ends at its kill). */
function waitIntervals(h) {
  const ends = new Map()
  for (const r of h.records) if (r.type === 'call' && r.cid) ends.set(r.cid, r.op === 'using' ? (r.fnStart ?? r.end) : r.end)
  const intervals = []
  for (const r of h.records) {
    if (r.type !== 'call-start') continue
    const end = ends.get(r.cid) ?? h.kills.get(processOf(r.who)) ?? h.lastSeen.get(r.who)
    intervals.push({ topology: r.topology, start: r.t, end })
  }
  return intervals
}

/** Promise 5: commands per second on each host stay within what waiting without polling needs. */
function checkWaitingCost(h) {
  const out = { violations: [], excused: [] }
  for (const r of h.records) {
    if (r.type === 'probe' && r.promise === 5 && r.took > r.bound) out.violations.push({ promise: 5, topology: r.topology, key: r.key, summary: `probe "${r.name}": ${r.outcome} (bound ${r.bound})` })
  }
  const waits = groupBy(waitIntervals(h), (w) => w.topology)
  const samples = groupBy(h.records.filter((r) => r.type === 'cmds'), (r) => `${r.topology}/${r.host}`)
  for (const [id, list] of samples) {
    list.sort((a, b) => a.t - b.t)
    for (let i = 1; i < list.length; i++) {
      const [a, b] = [list[i - 1], list[i]]
      const seconds = (b.t - a.t) / 1000
      if (b.total < a.total || a.runId !== b.runId || a.loading || b.loading || seconds < 0.5 || seconds > 3) continue
      let waitingMs = 0
      for (const w of waits.get(a.topology) ?? []) waitingMs += Math.max(0, Math.min(w.end, b.t) - Math.max(w.start, a.t))
      const waiters = waitingMs / (b.t - a.t)
      if (waiters < 0.5) continue
      const rate = (b.total - a.total) / seconds
      const others = Math.max(0, (h.run.actorsPerTopology ?? 0) - waiters)
      const allowed = B.COMMANDS_PER_WAITER_PER_S * waiters + B.COMMANDS_PER_OTHER_ACTOR_PER_S * others + 100
      if (rate <= allowed) continue
      // Consecutive seconds of one busy stretch on one host are one finding, with its peak.
      const previous = out.violations[out.violations.length - 1]
      if (previous && previous.host === id && previous.until === a.t) {
        previous.until = b.t
        previous.seconds++
        if (rate / waiters > previous.peakPerWaiter) previous.peakPerWaiter = Math.round(rate / waiters)
        previous.summary = previous.summary.replace(/ \(\d+ s long.*$/, '') + ` (${previous.seconds} s long, until ${rel(h, b.t)} ms, peak ${previous.peakPerWaiter} per waiter)`
        continue
      }
      out.violations.push({
        host: id, until: b.t, seconds: 1, peakPerWaiter: Math.round(rate / waiters),
        promise: 5, topology: a.topology, key: null,
        summary: `${id}: ${Math.round(rate)} commands/s with ${waiters.toFixed(1)} waiting on average (${Math.round(rate / waiters)} per waiter; allowed ${Math.round(allowed)}) between ${rel(h, a.t)} and ${rel(h, b.t)} ms`,
        faults: describeFaults(h, faultsDuring(h, a.t, b.t, a.topology)),
      })
    }
  }
  return out
}

/** Promise 6: after every graceful close, no live client's token holds a key; after the longest ttl, nothing does. */
function checkGhostLocks(h) {
  const out = { violations: [], excused: [] }
  const tokenOwner = new Map([...h.grants.values()].map((g) => [g.token, g.who]))
  for (const r of h.records) {
    if (r.type !== 'final-holder' || !r.token) continue
    const owner = tokenOwner.get(r.token)
    const ownerKilled = owner !== undefined && h.kills.has(processOf(owner))
    if (r.phase === 'immediate' && (owner === undefined || ownerKilled)) continue
    out.violations.push({
      promise: 6, topology: r.topology, key: r.key,
      summary: r.phase === 'immediate'
        ? `${r.topology}/${r.key} on host ${r.host} is still held after every client closed, by ${owner} (token ${r.token}, pttl ${r.pttl} ms)`
        : `${r.topology}/${r.key} on host ${r.host} is still held ${B.LONGEST_TTL_MS} ms after every client closed (token ${r.token}, owner ${owner ?? 'unknown'}, pttl ${r.pttl} ms)`,
    })
  }
  return out
}

/** Promise 7: every call settles within its bound (minus the caller's own blocked time). */
function checkCallBounds(h) {
  const out = { violations: [], excused: [] }
  const plain = B.CONNECT_TIMEOUT_MS + B.COMMAND_TIMEOUT_MS + B.CALL_SLACK_MS
  const report = (r, what, took, bound) => out.violations.push({
    promise: 7, topology: r.topology, key: r.key ?? null,
    summary: `${r.topology}/${r.key ?? '-'}: ${what} by ${r.who} took ${Math.round(took)} ms (bound ${bound} ms), from ${rel(h, r.start)} ms, outcome ${r.ok ? JSON.stringify(r.value ?? null) : r.code}`,
    faults: describeFaults(h, faultsDuring(h, r.start, r.end, r.topology)),
  })
  for (const r of h.records) {
    if (r.type === 'probe' && (r.promise ?? 7) === 7 && ((r.bound != null && r.took > r.bound) || r.outcome !== r.expected)) {
      out.violations.push({ promise: 7, topology: r.topology, key: r.key, summary: `probe "${r.name}": answered ${r.outcome} (expected ${r.expected}) after ${Math.round(r.took)} ms (bound ${r.bound} ms)` })
    }
    if (r.type !== 'call') continue
    const net = (from, to) => to - from - busyWithin(h, r.who, from, to)
    if (BOUNDED_OPS.has(r.op)) {
      const took = net(r.start, r.end)
      if (took > plain) report(r, r.op, took, plain)
    }
    if (r.op === 'acquire' || r.op === 'using') {
      const acquired = r.op === 'using' ? (r.fnStart ?? r.end) : r.end
      const bound = r.waitTimeout + plain
      const took = net(r.start, acquired)
      if (r.waitTimeout !== undefined && took > bound) report(r, `${r.op} (waiting)`, took, bound)
      if (r.abortAt != null && r.code === 'ABORT_ERR') {
        const afterAbort = net(r.abortAt, r.end)
        if (afterAbort > B.COMMAND_TIMEOUT_MS + B.CALL_SLACK_MS) report(r, `${r.op} settling after its abort`, afterAbort, B.COMMAND_TIMEOUT_MS + B.CALL_SLACK_MS)
      }
      if (r.op === 'using' && r.fnEnd != null) {
        const took = net(r.fnEnd, r.end)
        if (took > plain) report(r, 'using (release at the end)', took, plain)
      }
    }
  }
  return out
}

/** Promise 8: operator calls leave application keys alone and list only locks. */
function checkOperatorCalls(h) {
  const out = { violations: [], excused: [] }
  const add = (r, summary) => out.violations.push({ promise: 8, topology: r.topology, key: r.key ?? null, summary })
  for (const r of h.records) {
    if (r.type === 'listed' && r.nonLockKeys.length) add(r, `${r.topology}: list('*') by ${r.who ?? 'the orchestrator'} returned non-lock keys ${r.nonLockKeys.slice(0, 8).join(', ')}`)
    if (r.type === 'call' && r.op === 'list' && !r.ok && !TRANSPORT_CODES.has(r.code)) add(r, `${r.topology}: list('*') by ${r.who} failed with ${r.code}: ${r.message}`)
    if (r.type === 'operator-check') {
      if (r.forced === true) add(r, `${r.topology}: forceRelease('${r.key}') by ${r.who ?? 'the orchestrator'} answered true for an application key`)
      const lost = r.problems.filter((p) => !forgettingRestarts(h, r.topology, r.t - 5000, r.t).some((f) => f.host === p.host))
      if (lost.length) add(r, `${r.topology}: after forceRelease('${r.key}') (answer ${r.forced ?? r.code}) the application key is ${lost.map((p) => `${JSON.stringify(p.found)} on host ${p.host}`).join(', ')}`)
    }
    if (r.type === 'app-final' && r.problems.length) add(r, `${r.topology} host ${r.host} (${r.phase}): ${r.problems.join('; ')}`)
  }
  return out
}

/** Promise 9: after a fair waiter's process was killed, the other fair waiters still get the lock promptly after a release. */
function checkDeadFairWaiter(h) {
  const out = { violations: [], excused: [] }
  const ends = new Map(h.records.filter((r) => r.type === 'call' && r.cid).map((r) => [r.cid, r]))
  const fairStarts = h.records.filter((r) => r.type === 'call-start' && r.fair)
  const bound = B.FAIR_LIVENESS_MS + B.FAIR_SLACK_MS
  const releases = h.records.filter((r) => r.type === 'call' && r.op === 'release' && r.ok && r.value === true && h.grants.get(r.gid))
  const grantsByKey = groupBy([...h.grants.values()].flatMap(perKey), (g) => `${g.topology}/${g.key}`)
  for (const r of h.records) {
    if (r.type === 'probe' && r.promise === 9 && (r.took > r.bound || r.outcome !== r.expected)) {
      out.violations.push({ promise: 9, topology: r.topology, key: r.key, summary: `probe "${r.name}": ${r.outcome} after ${Math.round(r.took)} ms (bound ${r.bound} ms)` })
    }
  }
  const reported = new Set()
  for (const dead of fairStarts) {
    const killedAt = h.kills.get(processOf(dead.who))
    if (killedAt === undefined || ends.has(dead.cid) || dead.t > killedAt) continue
    for (const release of releases) {
      const g = h.grants.get(release.gid)
      if (g.topology !== dead.topology || g.key !== dead.key || release.end < killedAt || release.end > killedAt + bound + 1000) continue
      const R = release.end
      // Faults on the host or its proxy excuse a slow hand-over; the kill itself does not.
      const quiet = faultsDuring(h, R, R + bound).filter((f) => f.topology === dead.topology).length === 0
      const granted = (grantsByKey.get(`${g.topology}/${g.key}`) ?? []).some((other) => other.start > R && other.start <= R + bound)
      if (!quiet || granted) continue
      const starving = fairStarts.filter((w) => {
        if (w.topology !== dead.topology || w.key !== dead.key || w.t >= R || processOf(w.who) === processOf(dead.who)) return false
        const wKilled = h.kills.get(processOf(w.who))
        if (wKilled !== undefined && wKilled <= R + bound) return false
        const end = ends.get(w.cid)
        const endedAt = end ? (end.end ?? end.fnStart) : h.lastSeen.get(w.who) ?? -Infinity
        return endedAt > R + bound && busyWithin(h, w.who, R, R + bound) === 0
      })
      if (!starving.length || reported.has(`${dead.cid}`)) continue
      reported.add(`${dead.cid}`)
      out.violations.push({
        promise: 9, topology: dead.topology, key: dead.key,
        summary: `${dead.topology}/${dead.key}: ${dead.who} was killed at ${rel(h, killedAt)} ms while waiting fairly (ttl ${dead.ttl}); the lock was released at ${rel(h, R)} ms and ${starving.map((w) => w.who).join(', ')} still waited ${bound} ms later with no grant`,
      })
    }
  }
  return out
}

/** The register: refused fenced writes and lost counter updates made while the writer's lease lasted. */
function checkRegister(h) {
  const out = { violations: [], excused: [], unprotected: 0 }
  for (const r of h.records) {
    if (r.type !== 'write' || r.accepted) continue
    const g = h.grants.get(r.gid)
    if (!g) continue
    const finding = {
      promise: 'register', topology: g.topology, key: g.key,
      summary: `${g.topology}/${g.key}: the fenced register refused fence ${g.fence} of ${g.who} (valid at ${rel(h, r.checkedAt)} ms with ${Math.round(r.remaining)} ms left): it had seen fence ${r.storedFence} (token ${r.storedToken})`,
      grants: [describeGrant(h, g)],
      faults: describeFaults(h, faultsDuring(h, g.callStart, r.done, g.topology)),
    }
    if (r.done > r.checkedAt + r.remaining) out.unprotected++
    else if (forgettingRestarts(h, g.topology, g.callStart - 10000, r.done).length) out.excused.push({ ...finding, reason: 'a host restarted without persistence (README, Known limits)' })
    else out.violations.push(finding)
  }
  const rmws = h.records.filter((r) => r.type === 'rmw')
  for (const [id, list] of groupBy(rmws, (r) => `${r.topology}/${r.key}/${r.read}`)) {
    for (let i = 1; i < list.length; i++) {
      const [a, b] = [list[0], list[i]]
      if (a.token === b.token) continue
      const key = id.split('/').slice(0, 2).join('/')
      const finding = {
        promise: 'register', topology: a.topology, key: a.key,
        summary: `${key}: lost counter update: ${a.who} and ${b.who} both read ${a.read} and wrote ${a.read + 1} (at ${rel(h, a.done)} and ${rel(h, b.done)} ms)`,
        faults: describeFaults(h, faultsDuring(h, Math.min(a.checkedAt, b.checkedAt) - 1000, Math.max(a.done, b.done), a.topology)),
      }
      if (a.done > a.checkedAt + a.remaining || b.done > b.checkedAt + b.remaining) out.unprotected++
      else if (forgettingRestarts(h, a.topology, Math.min(a.checkedAt, b.checkedAt) - 10000, Math.max(a.done, b.done)).length) out.excused.push({ ...finding, reason: 'a host restarted without persistence (README, Known limits)' })
      else out.violations.push(finding)
    }
  }
  return out
}

const CHECKS = [checkMutualExclusion, checkPermits, checkFences, checkLossReports, checkScopes, checkWaitingCost, checkGhostLocks, checkCallBounds, checkOperatorCalls, checkDeadFairWaiter, checkRegister]

/** Runs every check; `violations` and `excused` are flat lists tagged with their promise. */
function verify(records) {
  const h = indexHistory(records)
  const violations = []
  const excused = []
  let unprotected = 0
  for (const check of CHECKS) {
    const result = check(h)
    violations.push(...result.violations)
    excused.push(...result.excused)
    unprotected += result.unprotected ?? 0
  }
  return { violations, excused, unprotected, history: h }
}

module.exports = {
  verify, indexHistory, windows, PROMISES,
  checkMutualExclusion, checkFences, checkLossReports, checkScopes, checkWaitingCost, checkGhostLocks, checkCallBounds, checkOperatorCalls, checkDeadFairWaiter, checkRegister,
}
