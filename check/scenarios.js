'use strict'

// The ways a client uses the locks. Each scenario takes one of the few keys of a topology,
// does its critical section, lets go, and writes down every call with its outcome.

const { now, sleep } = require('./clock')
const { isLockKey, APP_KEYS, SEMAPHORE_PERMITS } = require('./topologies')

// Short leases so faults matter, plus the smallest accepted (100 ms).
const TTLS = [[100, 0.6], [200, 2], [300, 2], [500, 2], [1000, 1.5], [2000, 1]]
const FAIR_TTLS = [500, 1000, 2000, 6000]

let nextCallId = 0

function pickTtl(rng) {
  return rng.weighted(TTLS.map(([ttl, weight]) => [ttl, weight]))
}

// maxHold below ttl/3 (ends renewal before the first one), or well above the ttl; never below
// the smallest lease accepted.
function pickMaxHold(rng, ttl) {
  const roll = rng.next()
  if (roll < 0.1) return Math.max(100, Math.floor(ttl / 4))
  if (roll < 0.2) return ttl * 3
  return undefined
}

function codeOf(error) {
  return (error && error.code) || 'NON_RELOCK'
}

/** Runs one library call and records its start, end and outcome. */
async function timed(ctx, op, fields, fn) {
  const start = now()
  try {
    const value = await fn()
    ctx.recorder.record('call', { op, topology: ctx.topology.name, ...fields, start, end: now(), ok: true, value: summarize(value) })
    return { ok: true, value }
  } catch (error) {
    ctx.recorder.record('call', { op, topology: ctx.topology.name, ...fields, start, end: now(), ok: false, code: codeOf(error), message: String(error && error.message).slice(0, 200) })
    return { ok: false, error }
  }
}

function summarize(value) {
  if (value === null || typeof value !== 'object') return value
  if (Array.isArray(value)) return value.length > 20 ? `${value.length} items` : value
  if ('token' in value && 'validity' in value) return { validity: value.validity }
  return undefined
}

function acquireOptions(ctx, { fair }) {
  const { rng } = ctx
  const ttl = fair ? rng.pick(FAIR_TTLS) : pickTtl(rng)
  return { ttl, waitTimeout: fair ? rng.int(1000, 8000) : rng.int(200, 3000), maxHold: fair ? undefined : pickMaxHold(rng, ttl), fair }
}

/** acquire (plain or fair), with a wait that is sometimes aborted. */
async function acquireScenario(ctx, { fair }) {
  const { rng, recorder, holding, client } = ctx
  const key = rng.pick(ctx.topology.keys)
  const options = acquireOptions(ctx, { fair })
  const cid = `${recorder.who}/c${++nextCallId}`
  const controller = new AbortController()
  let abortAt = null
  const abortTimer = rng.chance(0.15) ? setTimeout(() => { abortAt = now(); controller.abort() }, rng.int(0, options.waitTimeout)) : null
  const stop = () => { abortAt = abortAt ?? now(); controller.abort() }
  ctx.stopSignal.addEventListener('abort', stop, { once: true })
  const onLost = (reason) => recorder.record('lost', { cid, via: 'onLost', t: now(), code: reason && reason.code })
  const callStart = now()
  recorder.record('call-start', { cid, op: 'acquire', topology: ctx.topology.name, key, t: callStart, ...options })
  let handle
  try {
    handle = await client.acquire(key, { ...options, signal: controller.signal, onLost })
    recorder.record('call', { cid, op: 'acquire', topology: ctx.topology.name, key, start: callStart, end: now(), ok: true, waitTimeout: options.waitTimeout })
  } catch (error) {
    recorder.record('call', { cid, op: 'acquire', topology: ctx.topology.name, key, start: callStart, end: now(), ok: false, code: codeOf(error), abortAt, waitTimeout: options.waitTimeout })
    return
  } finally {
    if (abortTimer) clearTimeout(abortTimer)
    ctx.stopSignal.removeEventListener('abort', stop)
  }
  const grant = holding.handleGrant({ kind: fair ? 'acquire-fair' : 'acquire', topology: ctx.topology.name, key, handle, cid, callStart, ...options })
  await holding.criticalSection(grant, options.ttl, ctx)
  await holding.release(grant)
}

/**
 * A read-write lock (read or write), a semaphore's permits, or a multi-key lock over two of the
 * topology's lock keys (so it contends with the plain locks on them): acquired with a wait
 * that is sometimes aborted, held through a critical section, released.
 */
async function primitiveScenario(ctx, kind) {
  const { rng, recorder, holding, client } = ctx
  const fair = kind !== 'multi' && rng.chance(0.3)
  const options = acquireOptions(ctx, { fair })
  let key
  let take
  let extra = {}
  if (kind === 'rw-read' || kind === 'rw-write') {
    key = rng.pick(ctx.topology.rwKeys)
    const document = client.rwlock(key)
    take = (given) => (kind === 'rw-read' ? document.read(given) : document.write(given))
  } else if (kind === 'semaphore') {
    key = rng.pick(ctx.topology.semaphoreKeys)
    const permits = rng.int(1, SEMAPHORE_PERMITS)
    extra = { permits, limit: SEMAPHORE_PERMITS }
    take = (given) => client.semaphore(key, { permits: SEMAPHORE_PERMITS }).acquire({ ...given, permits })
  } else {
    const keys = someLockKeys(ctx)
    key = keys.join(', ')
    take = (given) => client.acquire(keys, given)
  }
  const cid = `${recorder.who}/c${++nextCallId}`
  const controller = new AbortController()
  let abortAt = null
  const abortTimer = rng.chance(0.15) ? setTimeout(() => { abortAt = now(); controller.abort() }, rng.int(0, options.waitTimeout)) : null
  const stop = () => { abortAt = abortAt ?? now(); controller.abort() }
  ctx.stopSignal.addEventListener('abort', stop, { once: true })
  const onLost = (reason) => recorder.record('lost', { cid, via: 'onLost', t: now(), code: reason && reason.code })
  const callStart = now()
  recorder.record('call-start', { cid, op: 'acquire', topology: ctx.topology.name, key, t: callStart, ...options })
  let handle
  try {
    handle = await take({ ...options, signal: controller.signal, onLost })
    recorder.record('call', { cid, op: 'acquire', topology: ctx.topology.name, key, start: callStart, end: now(), ok: true, waitTimeout: options.waitTimeout })
  } catch (error) {
    recorder.record('call', { cid, op: 'acquire', topology: ctx.topology.name, key, start: callStart, end: now(), ok: false, code: codeOf(error), abortAt, waitTimeout: options.waitTimeout })
    return
  } finally {
    if (abortTimer) clearTimeout(abortTimer)
    ctx.stopSignal.removeEventListener('abort', stop)
  }
  if (kind === 'multi') extra = { keys: handle.keys, fences: handle.fences }
  // A reader and a holder of permits get no fence that orders them (their grants are shared).
  const fence = kind === 'rw-read' ? null : handle.fence
  const grant = holding.handleGrant({ kind, topology: ctx.topology.name, key, handle, cid, callStart, ...options, fence, extra })
  if (kind === 'rw-write') await holding.criticalSection(grant, options.ttl, ctx)
  else if (kind === 'multi') await holding.multiSection(grant, options.ttl, ctx)
  else await holding.readSection(grant, options.ttl)
  await holding.release(grant)
}

/** One `using` call, its handle recorded as a grant; `body` runs inside it. */
async function usingCall(ctx, scope, key, options, body) {
  const { recorder, holding, client } = ctx
  const cid = `${recorder.who}/c${++nextCallId}`
  const callStart = now()
  recorder.record('call-start', { cid, op: 'using', topology: ctx.topology.name, key, t: callStart, ...options })
  let fnStart = null
  let fnEnd = null
  try {
    await client.using(key, { ...options, onLost: (reason) => recorder.record('lost', { cid, via: 'onLost', t: now(), code: reason && reason.code }) }, async (lock) => {
      fnStart = now()
      // Work started by a timer may find the scope over and take a lock of its own.
      const reentrant = scope.tokens.has(lock.token)
      const grant = holding.handleGrant({ kind: reentrant ? 'using-nested' : 'using', topology: ctx.topology.name, key, handle: lock, cid, callStart, ...options, reentrant })
      scope.tokens.add(lock.token)
      scope.handles.push(lock)
      scope.depth++
      try {
        await body(grant, lock)
      } finally {
        holding.letGo(grant)
        fnEnd = now()
      }
    })
    recorder.record('call', { cid, op: 'using', topology: ctx.topology.name, key, start: callStart, fnStart, fnEnd, end: now(), ok: true, waitTimeout: options.waitTimeout })
    return true
  } catch (error) {
    const own = error && error.message === 'callback failed on purpose'
    recorder.record('call', { cid, op: 'using', topology: ctx.topology.name, key, start: callStart, fnStart, fnEnd, end: now(), ok: false, code: own ? 'CALLBACK_ERROR' : codeOf(error), waitTimeout: options.waitTimeout })
    if (!own) scope.releaseFailed = true
    return own ? null : false
  }
}

// Starts `start` at once, or a few microtask hops later (around the moment the outer `using`
// calls release()), or on the next turn of the event loop, or after a short timer.
function startAround(rng, start) {
  const how = rng.int(0, 3)
  if (how === 0) return start()
  if (how === 1) {
    let hops = rng.int(1, 8)
    const hop = () => (hops-- > 0 ? Promise.resolve().then(hop) : start())
    return hop()
  }
  if (how === 2) return new Promise((resolve) => setImmediate(() => resolve(start())))
  return new Promise((resolve) => setTimeout(() => resolve(start()), rng.int(0, 5)))
}

/**
 * `using` in its variants: plain, nested (awaited), nested without await, a throwing
 * callback, an inner acquire never released, and work started with a timer. After the
 * outermost scope (and everything it started) is over, the scope's tokens must no longer hold
 * the key on any host, and its handles must answer isValid() === false.
 */
async function usingScenario(ctx, variant) {
  const { rng, holding, client } = ctx
  const key = rng.pick(ctx.topology.keys)
  const options = acquireOptions(ctx, { fair: false })
  const scope = { tokens: new Set(), handles: [], depth: 0, spawned: [], releaseFailed: false, leaked: null, maxTtl: options.ttl }
  const innerOptions = () => {
    const ttl = pickTtl(rng)
    scope.maxTtl = Math.max(scope.maxTtl, ttl)
    return { ttl, waitTimeout: rng.int(200, 2000) }
  }
  const outcome = await usingCall(ctx, scope, key, options, async (grant) => {
    await holding.criticalSection(grant, options.ttl, ctx)
    if (variant === 'nested') {
      await usingCall(ctx, scope, key, innerOptions(), (inner) => holding.criticalSection(inner, options.ttl, ctx))
    } else if (variant === 'nested-no-await') {
      // Started while the outer scope is ending: it races with the outer release.
      const start = () => usingCall(ctx, scope, key, innerOptions(), (inner) => holding.criticalSection(inner, options.ttl, ctx))
      scope.spawned.push(startAround(rng, start))
    } else if (variant === 'throws') {
      throw new Error('callback failed on purpose')
    } else if (variant === 'leaked-inner') {
      const cid = `${ctx.recorder.who}/c${++nextCallId}`
      const callStart = now()
      const result = await timed(ctx, 'acquire', { cid, key, reentrant: true }, () => client.acquire(key, innerOptions()))
      if (result.ok) {
        scope.leaked = result.value
        scope.tokens.add(result.value.token)
        scope.handles.push(result.value)
        const inner = holding.handleGrant({ kind: 'acquire-nested', topology: ctx.topology.name, key, handle: result.value, cid, callStart, ttl: options.ttl, reentrant: true })
        await holding.criticalSection(inner, options.ttl, ctx)
        holding.letGo(inner)
      }
    } else if (variant === 'timer-work') {
      scope.spawned.push(new Promise((resolve) => setTimeout(() => {
        resolve(usingCall(ctx, scope, key, innerOptions(), (later) => holding.criticalSection(later, options.ttl, ctx)))
      }, rng.int(0, options.ttl))))
    }
  })
  const spawned = await Promise.all(scope.spawned)
  if (scope.tokens.size === 0) return
  const releaseOk = outcome === true && !scope.releaseFailed && spawned.every((ok) => ok !== false)
  await sleep(5)
  await checkScope(ctx, key, scope, 'soon', releaseOk, variant)
  await sleep(scope.maxTtl + 150)
  await checkScope(ctx, key, scope, 'late', releaseOk, variant)
  // Only now let the leaked handle go, so one lingering hold does not stall the key for the
  // rest of the run.
  if (scope.leaked) await scope.leaked.release().catch(() => {})
}

async function checkScope(ctx, key, scope, phase, releaseOk, variant) {
  const t = now()
  const held = []
  const unknown = []
  await Promise.all(ctx.probes.map(async (probe, host) => {
    try {
      const value = await probe.call('GET', key)
      if (scope.tokens.has(value)) held.push(host)
    } catch {
      unknown.push(host)
    }
  }))
  const validHandles = scope.handles.filter((handle) => handle.isValid()).length
  ctx.recorder.record('scope-check', { topology: ctx.topology.name, key, phase, t, done: now(), variant, tokens: [...scope.tokens], held, unknown, validHandles, releaseOk })
}

/** Two or more (at most `most`) of the keys for multi-key locks, in a random order. */
function someLockKeys({ rng, topology }, most = Infinity) {
  const keys = [...(topology.multiKeys.length ? topology.multiKeys : topology.keys)]
  for (let i = keys.length - 1; i > 0; i--) {
    const j = rng.int(0, i)
    ;[keys[i], keys[j]] = [keys[j], keys[i]]
  }
  keys.length = rng.int(2, Math.min(most, keys.length))
  return keys
}

// `lock` or `lockWithValidity`, sometimes extended, then unlock; or `lock` over several keys at
// once (`lock-multi`: a token and no fences), tried a few times, as all of them are seldom free.
async function plainScenario(ctx, op) {
  const { rng, holding, client, recorder } = ctx
  const keys = op === 'lock-multi' ? someLockKeys(ctx, 2) : null
  const key = keys ? keys.join(', ') : rng.pick([...ctx.topology.keys, ...ctx.topology.multiKeys])
  const target = keys ?? key
  const ttl = pickTtl(rng)
  const withValidity = op === 'lockWithValidity'
  let attemptsLeft = keys ? 12 : 1
  let cid
  let callStart
  let result
  for (;;) {
    cid = `${recorder.who}/c${++nextCallId}`
    callStart = now()
    result = await timed(ctx, op, { cid, key, ttl }, () => (withValidity ? client.lockWithValidity(key, ttl) : client.lock(target, ttl)))
    if (!result.ok || result.value !== null || --attemptsLeft === 0 || ctx.stopping()) break
    await sleep(rng.int(5, 30))
  }
  if (!result.ok || result.value === null) return
  const token = withValidity ? result.value.token : result.value
  const extra = keys ? { keys, fences: keys.map(() => null) } : {}
  const grant = holding.plainGrant({ kind: op, topology: ctx.topology.name, key, token, cid, callStart, ttl, validity: withValidity ? result.value.validity : null, extra })
  if (keys) await holding.multiSection(grant, ttl, ctx)
  else await holding.criticalSection(grant, ttl, ctx)
  if (!keys && rng.chance(0.3) && grant.isValid()) {
    const extendStart = now()
    const extended = await timed(ctx, 'extend', { gid: grant.gid, key }, () => client.extend(key, token, ttl))
    if (extended.ok && extended.value === true) {
      // The same rule as for the lock: the renewed key cannot outlive extendStart + ttl.
      grant.windowEnd = Math.max(grant.windowEnd, extendStart + ttl - (ttl * 0.01 + 2))
      recorder.record('window', { gid: grant.gid, end: grant.windowEnd })
      await holding.criticalSection(grant, ttl, ctx)
    }
  }
  holding.letGo(grant)
  const unlocked = await timed(ctx, 'unlock', { gid: grant.gid, key }, () => client.unlock(target, token))
  recorder.record('release', { gid: grant.gid, ok: unlocked.ok, value: unlocked.ok ? unlocked.value : null })
}

/** Operator calls: they must only ever touch locks. */
async function operatorScenario(ctx) {
  const { rng, client, recorder } = ctx
  const listed = await timed(ctx, 'list', { pattern: '*' }, () => client.list('*'))
  if (listed.ok) recorder.record('listed', { topology: ctx.topology.name, t: now(), nonLockKeys: listed.value.filter((key) => !isLockKey(key)) })
  const { key } = rng.pick(APP_KEYS)
  const forced = await timed(ctx, 'forceRelease', { key }, () => client.forceRelease(key))
  const problems = []
  await Promise.all(ctx.probes.map(async (probe, host) => {
    const app = APP_KEYS.find((entry) => entry.key === key)
    try {
      const value = await probe.call(...app.read)
      if (value !== app.expect) problems.push({ host, found: value })
    } catch {}
  }))
  recorder.record('operator-check', { topology: ctx.topology.name, key, t: now(), forced: forced.ok ? forced.value : null, code: forced.ok ? null : codeOf(forced.error), problems })
  await timed(ctx, 'inspect', { key: rng.pick(ctx.topology.keys) }, () => client.inspect(rng.pick(ctx.topology.keys)))
}

function scenarioWeights(topology) {
  return [
    ['acquire', 4], ['acquire-fair', topology === 'one' ? 3 : 0],
    ['using', 2], ['using-nested', 1.5], ['using-nested-no-await', 1.5], ['using-throws', 0.7], ['using-leaked-inner', 0.3], ['using-timer-work', 1],
    ['lock', 2.5], ['lockWithValidity', 2], ['operator', 0.15],
    // One host only: read-write locks, semaphores, multi-key locks.
    ...(topology === 'one' ? [['rw-read', 2], ['rw-write', 1.5], ['semaphore', 2], ['multi', 3], ['lock-multi', 1.5]] : []),
  ]
}

function runScenario(ctx, name) {
  switch (name) {
    case 'acquire': return acquireScenario(ctx, { fair: false })
    case 'acquire-fair': return acquireScenario(ctx, { fair: true })
    case 'using': return usingScenario(ctx, 'plain')
    case 'using-nested': return usingScenario(ctx, 'nested')
    case 'using-nested-no-await': return usingScenario(ctx, 'nested-no-await')
    case 'using-throws': return usingScenario(ctx, 'throws')
    case 'using-leaked-inner': return usingScenario(ctx, 'leaked-inner')
    case 'using-timer-work': return usingScenario(ctx, 'timer-work')
    case 'lock':
    case 'lockWithValidity':
    case 'lock-multi':
      return plainScenario(ctx, name)
    case 'operator': return operatorScenario(ctx)
    case 'rw-read':
    case 'rw-write':
    case 'semaphore':
    case 'multi':
      return primitiveScenario(ctx, name)
    default: throw new Error(`unknown scenario ${name}`)
  }
}

module.exports = { runScenario, scenarioWeights, timed }
