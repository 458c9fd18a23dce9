'use strict'

// The verification of check/history.js on crafted histories: every promise's check must flag
// a history that breaks it and pass a clean one (a checker that cannot fail is no checker).

const { test } = require('node:test')
const assert = require('node:assert/strict')
const { verify } = require('../check/history')

const RUN = { type: 'run-start', t0: 0, hostsPerTopology: { one: 1, rl3: 3 }, actorsPerTopology: 4 }

function grant(gid, who, fields = {}) {
  return { type: 'grant', gid, who, kind: 'acquire', topology: 'one', key: 'lk:one:0', token: `token-${gid}`, fence: null, start: 0, callStart: 0, ttl: 500, ...fields }
}
const obs = (gid, who, t, valid = true) => ({ type: 'obs', gid, who, t, valid, remaining: valid ? 100 : 0 })
const letGo = (gid, who, t) => ({ type: 'release-call', gid, who, t, lastValidAt: null })
const alive = (who, t) => ({ type: 'env-start', who, t })

function promisesBroken(records) {
  return verify([RUN, ...records]).violations.map((v) => v.promise)
}

function excusedPromises(records) {
  return verify([RUN, ...records]).excused.map((v) => v.promise)
}

test('a clean history has no violation', () => {
  assert.deepEqual(promisesBroken([]), [])
})

test('1 mutual exclusion: an overlap of two tokens is flagged, one after the other is not', () => {
  const first = [grant('a', 'p0g0t0', { start: 0 }), obs('a', 'p0g0t0', 140), letGo('a', 'p0g0t0', 150)]
  assert.deepEqual(promisesBroken([...first, grant('b', 'p1g0t0', { start: 120, callStart: 110 })]), [1])
  assert.deepEqual(promisesBroken([...first, grant('b', 'p1g0t0', { start: 160, callStart: 110 })]), [])
  // isValid() observed true after the other grant started: the window reaches that far.
  assert.deepEqual(promisesBroken([grant('a', 'p0g0t0'), obs('a', 'p0g0t0', 300), grant('b', 'p1g0t0', { start: 200 })]), [1])
  // A handle that was never seen valid (it came already lost) had no window.
  assert.deepEqual(promisesBroken([grant('a', 'p0g0t0'), obs('a', 'p0g0t0', 300), grant('b', 'p1g0t0', { start: 200 }), obs('b', 'p1g0t0', 201, false)]), [1])
  assert.deepEqual(promisesBroken([grant('a', 'p0g0t0', { start: 200 }), obs('a', 'p0g0t0', 201, false), grant('b', 'p1g0t0', { start: 100 }), obs('b', 'p1g0t0', 300)]), [])
  // A reentrant grant shares the token: no overlap with itself.
  assert.deepEqual(promisesBroken([...first, grant('b', 'p0g0t0', { start: 120, token: 'token-a', kind: 'using-nested' })]), [])
  // A plain lock's window is its validity, cut by unlock.
  const plain = [grant('c', 'p0g0t0', { kind: 'lockWithValidity', start: 10, callStart: 0, ttl: 500, validity: 480, windowEnd: 490 })]
  assert.deepEqual(promisesBroken([...plain, grant('d', 'p1g0t0', { kind: 'lock', start: 400, windowEnd: 800 })]), [1])
  assert.deepEqual(promisesBroken([...plain, letGo('c', 'p0g0t0', 300), grant('d', 'p1g0t0', { kind: 'lock', start: 400, windowEnd: 800 })]), [])
})

test('1 mutual exclusion: a restart without persistence in between is reported as a documented limit', () => {
  const records = [grant('a', 'p0g0t0', { topology: 'rl3' }), obs('a', 'p0g0t0', 100), grant('b', 'p1g0t0', { topology: 'rl3', start: 50 }), obs('b', 'p1g0t0', 60),
    { type: 'fault', kind: 'kill-restart', topology: 'rl3', host: 2, start: 20, end: 40 }]
  assert.deepEqual(promisesBroken(records), [])
  assert.deepEqual(excusedPromises(records), [1])
  // A reentrant grant holds what its outer grant took: a restart after the outer grant (and
  // before the reentry) forgot the same lock.
  const nested = [grant('o', 'p0g0t0', { topology: 'rl3', kind: 'using', start: 0, callStart: 0 }), obs('o', 'p0g0t0', 40),
    grant('n', 'p0g0t0', { topology: 'rl3', kind: 'using-nested', token: 'token-o', start: 60, callStart: 60, reentrant: true }), obs('n', 'p0g0t0', 120),
    grant('b', 'p1g0t0', { topology: 'rl3', start: 100, callStart: 90 }), obs('b', 'p1g0t0', 110),
    { type: 'fault', kind: 'kill-restart', topology: 'rl3', host: 2, start: 20, end: 80 }]
  assert.deepEqual(promisesBroken(nested), [])
  assert.deepEqual(excusedPromises(nested), [1])
})

test('2 fences only grow: a lower fence after an earlier grant is flagged', () => {
  const earlier = grant('a', 'p0g0t0', { fence: 5, start: 10, callStart: 0 })
  assert.ok(promisesBroken([earlier, grant('b', 'p1g0t0', { fence: 4, start: 30, callStart: 20 })]).includes(2))
  assert.deepEqual(promisesBroken([earlier, grant('b', 'p1g0t0', { fence: 6, start: 30, callStart: 20 })]), [])
  assert.deepEqual(promisesBroken([earlier, grant('b', 'p1g0t0', { fence: 4, start: 30, callStart: 20, reentrant: true, kind: 'using-nested' })]), [])
  const probe = (outcome) => ({ type: 'probe', promise: 2, name: 'fence after a failed raise', topology: 'rl3', key: 'lk:rl3:2', outcome, expected: 'grew', fences: [4, 5, 5] })
  assert.deepEqual(promisesBroken([probe('did not grow')]), [2])
  assert.deepEqual(promisesBroken([probe('grew')]), [])
  assert.deepEqual(promisesBroken([probe('inconclusive (ERR_RELOCK_TIMEOUT)')]), [])
  // Calls that overlapped in time have no certain order: not compared.
  assert.deepEqual(promisesBroken([earlier, grant('b', 'p1g0t0', { fence: 4, start: 30, callStart: 5 })]), [])
})

test('3 loss reported on time: a late or missing report is flagged, a prompt one is not', () => {
  const held = [grant('a', 'p0g0t0'), obs('a', 'p0g0t0', 90), { type: 'invalid', gid: 'a', who: 'p0g0t0', t: 100, lastValidAt: 90 }, alive('p0g0t0', 5000)]
  assert.deepEqual(promisesBroken([...held, { type: 'lost', gid: 'a', who: 'p0g0t0', via: 'signal', t: 800, code: 'ERR_RELOCK_LOCK_LOST' }]), [3])
  assert.deepEqual(promisesBroken([...held, { type: 'lost', gid: 'a', who: 'p0g0t0', via: 'signal', t: 120, code: 'ERR_RELOCK_LOCK_LOST' }]), [])
  assert.deepEqual(promisesBroken(held), [3])
  // The holder's own event loop was blocked meanwhile: not the library's delay.
  assert.deepEqual(promisesBroken([...held, { type: 'block', who: 'p0g0t0', start: 95, end: 790 }, { type: 'lost', gid: 'a', who: 'p0g0t0', via: 'signal', t: 800 }]), [])
  // Released before it turned invalid: nothing to report.
  assert.deepEqual(promisesBroken([grant('a', 'p0g0t0'), letGo('a', 'p0g0t0', 50), { type: 'invalid', gid: 'a', who: 'p0g0t0', t: 100 }, alive('p0g0t0', 5000)]), [])
})

test('4 scopes end holds: a token still holding or a valid handle after the scope is flagged', () => {
  const check = (fields) => ({ type: 'scope-check', who: 'p0g0t0', topology: 'one', key: 'lk:one:0', phase: 'late', t: 100, tokens: ['x'], held: [], unknown: [], validHandles: 0, releaseOk: true, variant: 'plain', ...fields })
  assert.deepEqual(promisesBroken([check({ held: [0] })]), [4])
  assert.deepEqual(promisesBroken([check({ validHandles: 1 })]), [4])
  assert.deepEqual(promisesBroken([check({ phase: 'soon', held: [0] })]), [4])
  assert.deepEqual(promisesBroken([check({ phase: 'soon', held: [0], releaseOk: false })]), []) // a failed release leaves it to the ttl
  assert.deepEqual(promisesBroken([check({})]), [])
  const rl3 = (fields) => check({ topology: 'rl3', key: 'lk:rl3:0', ...fields })
  assert.deepEqual(promisesBroken([rl3({ held: [2] })]), []) // a minority: a late attempt's copy, expiring by ttl
  assert.deepEqual(promisesBroken([rl3({ held: [0, 2] })]), [4])
})

test('5 waiting costs little: a busy loop of waiters is flagged, sleeping waiters are not', () => {
  const waiting = [{ type: 'call-start', cid: 'w', who: 'p0g0t0', topology: 'one', key: 'lk:one:0', t: 0 }, { type: 'call', cid: 'w', who: 'p0g0t0', op: 'acquire', topology: 'one', start: 0, end: 2000, ok: false, code: 'ERR_RELOCK_WAIT_TIMEOUT', waitTimeout: 2000 }]
  const samples = (total) => [{ type: 'cmds', topology: 'one', host: 0, t: 0, total: 0 }, { type: 'cmds', topology: 'one', host: 0, t: 1000, total }]
  assert.deepEqual(promisesBroken([...waiting, ...samples(60000)]), [5])
  assert.deepEqual(promisesBroken([...waiting, ...samples(300)]), [])
  assert.deepEqual(promisesBroken(samples(60000)), []) // nobody waited: not about waiting
  const acrossRestart = [{ type: 'cmds', topology: 'one', host: 0, t: 0, total: 0, runId: 'a' }, { type: 'cmds', topology: 'one', host: 0, t: 1000, total: 60000, runId: 'b' }]
  assert.deepEqual(promisesBroken([...waiting, ...acrossRestart]), []) // a restarted server replays its AOF
  assert.deepEqual(promisesBroken([...waiting, ...acrossRestart.map((sample) => ({ ...sample, runId: 'a' }))]), [5])
  assert.deepEqual(promisesBroken([...waiting, ...acrossRestart.map((sample, i) => ({ ...sample, runId: 'a', loading: i === 0 }))]), []) // still loading its AOF

  const probe = (perWaiter) => ({ type: 'probe', promise: 5, name: 'two waiters', topology: 'rl3', key: 'lk:rl3:0', took: perWaiter, bound: 500, outcome: `${perWaiter} commands/s per waiter` })
  assert.deepEqual(promisesBroken([probe(30000)]), [5])
  assert.deepEqual(promisesBroken([probe(3)]), [])
})

test('6 no ghost locks: a live client token left after close is flagged, a killed client token only after its ttl', () => {
  const granted = [grant('a', 'p0g0t0'), grant('b', 'p1g0t0', { start: 1000 }), { type: 'client-kill', process: 'p1g0', t: 2000 }]
  const holder = (token, phase) => ({ type: 'final-holder', topology: 'one', host: 0, key: 'lk:one:0', token, pttl: 100, phase })
  assert.deepEqual(promisesBroken([...granted, holder('token-a', 'immediate')]), [6])
  assert.deepEqual(promisesBroken([...granted, holder('token-b', 'immediate')]), [])
  assert.deepEqual(promisesBroken([...granted, holder('token-b', 'late')]), [6])
  assert.deepEqual(promisesBroken([...granted, holder(null, 'late')]), [])
})

test('7 bounded calls: an overrun is flagged unless the caller was blocked', () => {
  const call = (fields) => ({ type: 'call', who: 'p0g0t0', op: 'lock', topology: 'one', key: 'lk:one:0', start: 0, end: 2000, ok: true, value: null, ...fields })
  assert.deepEqual(promisesBroken([call({})]), [7])
  assert.deepEqual(promisesBroken([call({ end: 100 })]), [])
  assert.deepEqual(promisesBroken([call({}), { type: 'block', who: 'p0g0t0', start: 0, end: 1900 }]), [])
  assert.deepEqual(promisesBroken([call({ op: 'acquire', waitTimeout: 3000 })]), [])
  assert.deepEqual(promisesBroken([call({ op: 'acquire', waitTimeout: 500 })]), [7])
  assert.deepEqual(promisesBroken([call({ op: 'acquire', waitTimeout: 3000, ok: false, code: 'ABORT_ERR', abortAt: 100 })]), [7])
  const probe = (fields) => ({ type: 'probe', name: 'busy with a stopped host', topology: 'rl3', key: 'lk:rl3:0', took: 5, bound: 250, outcome: 'busy', expected: 'busy', ...fields })
  assert.deepEqual(promisesBroken([probe({})]), [])
  assert.deepEqual(promisesBroken([probe({ took: 600 })]), [7])
  assert.deepEqual(promisesBroken([probe({ outcome: 'ERR_RELOCK_NO_QUORUM' })]), [7])
  assert.deepEqual(promisesBroken([probe({ bound: null, took: 5000, outcome: 'recovered', expected: 'recovered' })]), [])
  assert.deepEqual(promisesBroken([probe({ bound: null, took: 5000, outcome: 'still failing', expected: 'recovered' })]), [7])
})

test('8 operator calls touch only locks: non-lock keys listed, an app key released or changed are flagged', () => {
  assert.deepEqual(promisesBroken([{ type: 'listed', topology: 'one', nonLockKeys: ['user:1'] }]), [8])
  assert.deepEqual(promisesBroken([{ type: 'listed', topology: 'one', nonLockKeys: [] }]), [])
  assert.deepEqual(promisesBroken([{ type: 'call', who: 'p0g0t0', op: 'list', topology: 'one', start: 0, end: 1, ok: false, code: 'ERR_RELOCK_REDIS', message: 'WRONGTYPE' }]), [8])
  assert.deepEqual(promisesBroken([{ type: 'call', who: 'p0g0t0', op: 'list', topology: 'one', start: 0, end: 1, ok: false, code: 'ERR_RELOCK_TIMEOUT' }]), [])
  const operatorCheck = (fields) => ({ type: 'operator-check', topology: 'one', key: 'user:1', t: 10000, forced: false, code: null, problems: [], ...fields })
  assert.deepEqual(promisesBroken([operatorCheck({ forced: true })]), [8])
  assert.deepEqual(promisesBroken([operatorCheck({ problems: [{ host: 0, found: null }] })]), [8])
  assert.deepEqual(promisesBroken([operatorCheck({})]), [])
  assert.deepEqual(promisesBroken([{ type: 'app-final', topology: 'one', host: 0, phase: 'end', problems: ['user:1: expected "alice", found null'] }]), [8])
})

test('9 dead fair waiter: live fair waiters left waiting after a release are flagged', () => {
  const history = [
    { type: 'call-start', cid: 'dead', who: 'p1g0t0', op: 'acquire', topology: 'one', key: 'lk:one:0', t: 0, fair: true, ttl: 6000 },
    { type: 'call-start', cid: 'live', who: 'p2g0t0', op: 'acquire', topology: 'one', key: 'lk:one:0', t: 50, fair: true, ttl: 1000 },
    { type: 'client-kill', process: 'p1g0', t: 100 },
    grant('h', 'p0g0t0', { start: 0 }),
    { type: 'call', who: 'p0g0t0', op: 'release', gid: 'h', topology: 'one', key: 'lk:one:0', start: 190, end: 200, ok: true, value: true },
    alive('p2g0t0', 10000),
  ]
  assert.deepEqual(promisesBroken(history), [9])
  assert.deepEqual(promisesBroken([...history, grant('n', 'p2g0t0', { start: 1000, callStart: 50 })]), [])
  const probe = (took) => ({ type: 'probe', promise: 9, name: 'dead fair waiter', topology: 'one', key: 'lk:one:2', took, bound: 3500, outcome: 'taken', expected: 'taken' })
  assert.deepEqual(promisesBroken([probe(10000)]), [9])
  assert.deepEqual(promisesBroken([probe(5)]), [])
})

test('register: a refused fenced write within the lease and a lost counter update are flagged', () => {
  const a = grant('a', 'p0g0t0', { fence: 3 })
  const write = (fields) => ({ type: 'write', gid: 'a', who: 'p0g0t0', checkedAt: 10, remaining: 100, done: 12, accepted: false, storedFence: 4, storedToken: 'other', ...fields })
  assert.deepEqual(promisesBroken([a, write({})]), ['register'])
  assert.deepEqual(promisesBroken([a, write({ accepted: true })]), [])
  assert.deepEqual(promisesBroken([a, write({ done: 500 })]), []) // the lease ran out during the write
  const rmw = (who, token, read) => ({ type: 'rmw', who, token, topology: 'one', key: 'lk:one:0', read, checkedAt: 10, remaining: 100, done: 12 })
  assert.deepEqual(promisesBroken([rmw('p0g0t0', 'x', 7), rmw('p1g0t0', 'y', 7)]), ['register'])
  assert.deepEqual(promisesBroken([rmw('p0g0t0', 'x', 7), rmw('p1g0t0', 'y', 8)]), [])
})
