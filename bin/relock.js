#!/usr/bin/env node
'use strict'

// relock's operator command: look at locks, watch one change, sum them up and, when needed,
// release one by force.

const { Redlock } = require('..')

const USAGE = `usage: relock <command> [arguments] [--url URL ...] [--json]

commands:
  inspect <key>             holder token, remaining ttl, fence and fair queue of a lock, per host
  list [pattern]            locks whose key matches a glob pattern (default *), found with SCAN
                            (--limit N: at most N keys, default 100)
  release <key> --yes       release a lock whoever holds it (a fair waiter next in line gets it)
  rwlock <key>              writer, readers with their time left, waiting writers and fair queue
                            of a read-write lock (one host, Sentinel or Cluster)
  semaphore <key>           permits in use, holders with their permits and time left, and fair
                            queue of a semaphore (one host, Sentinel or Cluster)
  watch <key>               inspect a lock again and again, printing its state and what changed
                            (--interval MS: 50 to 60000, default 500; --count N: stop after N
                            refreshes, else run until Ctrl-C)
  stats [pattern]           a summary of the locks matching a pattern (default *), per host: held
                            keys, keys with fair waiters, waiters, lowest ttl, highest fence
                            (--limit N: look at most at N keys, default 100)

options:
  --url URL                 a Redis URL; repeat it for Redlock hosts
                            (default: $RELOCK_URLS, comma-separated, or redis://127.0.0.1:6379)
  --json                    print JSON instead of tables (watch: one JSON object per line per refresh)`

function parse(argv) {
  const options = { urls: [], json: false, yes: false, limit: 100, positional: [] }
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]
    if (arg === '--url') options.urls.push(argv[++i])
    else if (arg === '--json') options.json = true
    else if (arg === '--yes') options.yes = true
    else if (arg === '--limit') options.limit = limitOf(argv[++i])
    else if (arg === '--interval') options.interval = wholeNumber('--interval', argv[++i], 50, 60000)
    else if (arg === '--count') options.count = wholeNumber('--count', argv[++i], 1, Number.MAX_SAFE_INTEGER)
    else if (arg === '--help' || arg === '-h') options.help = true
    else if (arg.startsWith('--')) throw new UsageError(`unknown option ${arg}`)
    else options.positional.push(arg)
  }
  if (options.urls.length === 0) options.urls = (process.env.RELOCK_URLS || 'redis://127.0.0.1:6379').split(',')
  if (options.urls.some((url) => !url)) throw new UsageError('--url needs a value')
  return options
}

class UsageError extends Error {}

function wholeNumber(option, value, min, max) {
  const number = value === undefined || value.trim() === '' ? NaN : Number(value)
  if (!Number.isInteger(number) || number < min || number > max) {
    const range = max === Number.MAX_SAFE_INTEGER ? `${min} or more` : `from ${min} to ${max}`
    throw new UsageError(`${option} must be a whole number ${range}, got ${value === undefined ? 'nothing' : JSON.stringify(value)}`)
  }
  return number
}

const limitOf = (value) => wholeNumber('--limit', value, 1, 10000)

function table(rows, columns) {
  const widths = columns.map((column) => Math.max(column.length, ...rows.map((row) => String(row[column] ?? '').length)))
  const line = (cells) => cells.map((cell, i) => String(cell ?? '').padEnd(widths[i])).join('  ').trimEnd()
  return [line(columns), line(widths.map((width) => '-'.repeat(width))), ...rows.map((row) => line(columns.map((c) => row[c])))].join('\n')
}

const ms = (value) => (value === null || value === undefined ? '-' : `${value} ms`)
const holderOf = (state) => {
  if (state.error) return `(unreachable: ${state.error.code})`
  if (state.semaphore) return '(a semaphore: relock semaphore <key>)'
  if (state.holder) return state.holder
  if (state.readers > 0) return `(${state.readers} reader${state.readers === 1 ? '' : 's'}: relock rwlock <key>)`
  return state.foreign ? '(not a relock lock)' : '(free)'
}

// Hosts that could not be asked are marked in the output and make the command exit 1, after
// the answers of the others have been printed.
let someHostFailed = false
function warnAbout(host, error) {
  someHostFailed = true
  console.error(`relock: ${host} did not answer: ${error.message} (${error.code})`)
}

const errorJson = (error) => error && { code: error.code, message: error.message }
const stateJson = (state) => ({ ...state, error: errorJson(state.error) })

// The per-host table of a lock's state, followed by its fair queue when there is one.
function render(states) {
  const hosts = table(states.map((s) => ({ host: s.host, holder: holderOf(s), ttl: ms(s.ttl), fence: s.fence ?? '-', waiting: s.waiters.length })), ['host', 'holder', 'ttl', 'fence', 'waiting'])
  const queue = states.flatMap((s) => s.waiters.map((w, position) => ({ host: s.host, position: position + 1, token: w.token, 'asks for': ms(w.ttl), 'dropped in': ms(w.expiresIn) })))
  return queue.length ? `${hosts}\n\nfair queue:\n${table(queue, ['host', 'position', 'token', 'asks for', 'dropped in'])}` : hosts
}

async function inspect(locks, key, json) {
  const states = await locks.inspect(key)
  for (const state of states) if (state.error) warnAbout(state.host, state.error)
  if (json) return JSON.stringify(states.map(stateJson), null, 2)
  return render(states)
}

async function list(locks, pattern, limit, json) {
  const keys = await locks.list(pattern, { limit })
  for (const { host, error } of keys.failedHosts) warnAbout(host, error)
  const rows = []
  for (const key of keys) {
    const state = (await locks.inspect(key)).find((answer) => !answer.error)
    rows.push({ key, holder: holderOf(state), ttl: ms(state.ttl), fence: state.fence ?? '-', waiting: state.waiters.length })
  }
  if (json) return JSON.stringify(rows, null, 2)
  return rows.length ? table(rows, ['key', 'holder', 'ttl', 'fence', 'waiting']) : `no keys match ${pattern}`
}

async function readWrite(locks, key, json) {
  const state = await locks.rwlock(key).state()
  if (json) return JSON.stringify(state, null, 2)
  const writer = state.writer ? `${state.writer} (${ms(state.writerTtl)} left, fence ${state.fence})` : '(none)'
  const lines = [`writer: ${writer}`, `readers: ${state.readerCount}`, `waiting writers: ${state.waitingWriters}`]
  if (state.readers.length) lines.push('', table(state.readers.map((reader) => ({ reader: reader.token, left: ms(reader.ttl) })), ['reader', 'left']))
  if (state.queueLength) lines.push('', `fair queue (${state.queueLength}):`, table(state.queue.map((entry, position) => ({ position: position + 1, mode: entry.mode, token: entry.token })), ['position', 'mode', 'token']))
  return lines.join('\n')
}

async function semaphore(locks, key, json) {
  // The number of permits is each caller's own (it is not stored): the state shows use only.
  const state = await locks.semaphore(key, { permits: 1 }).state()
  if (json) return JSON.stringify(state, null, 2)
  const lines = [`permits in use: ${state.inUse}`, `holders: ${state.holderCount}`, `last fence: ${state.fence}`]
  if (state.holders.length) lines.push('', table(state.holders.map((holder) => ({ holder: holder.token, permits: holder.permits, left: ms(holder.ttl) })), ['holder', 'permits', 'left']))
  if (state.queueLength) lines.push('', `fair queue (${state.queueLength}):`, table(state.queue.map((token, position) => ({ position: position + 1, token })), ['position', 'token']))
  return lines.join('\n')
}

async function release(locks, key, yes) {
  if (!yes) throw new UsageError(`releasing '${key}' takes it from its holder, who may still be working under it: add --yes to confirm`)
  return (await locks.forceRelease(key)) ? `released '${key}'` : `'${key}' was not held`
}

// Failures of the hosts themselves: watch shows them and keeps asking. Anything else (a key
// relock refuses, a client that refuses to go on) ends it.
const HOST_FAILURES = new Set(['ERR_RELOCK_CONNECTION', 'ERR_RELOCK_TIMEOUT', 'ERR_RELOCK_AUTH', 'ERR_RELOCK_REDIS', 'ERR_RELOCK_NO_QUORUM'])

// When no host answered, inspect rejects as a whole: each host is then marked with its own
// failure, as the message of ERR_RELOCK_NO_QUORUM names it, or with the whole error.
function unanswered(hosts, error) {
  return hosts.map((host) => {
    let own = error
    if (hosts.length > 1) {
      const at = error.message.indexOf(`${host}: `)
      const cause = at >= 0 && /^(.*?) \((ERR_[A-Z_]+)\)(?:; |$)/.exec(error.message.slice(at + host.length + 2))
      if (cause) own = { code: cause[2], message: `${host}: ${cause[1]}` }
    }
    return { host, holder: null, ttl: null, fence: null, waiters: [], foreign: false, semaphore: false, readers: 0, error: own }
  })
}

// What changed on one host since the previous refresh, in words; a host that answers again
// after failing is compared with its last answer.
function changesOn(before, lastAnswer, now) {
  if (now.error) return before && before.error && before.error.code === now.error.code ? [] : [`unreachable: ${now.error.code}`]
  if (!before) return []
  if (before.error) return ['answers again', ...(lastAnswer ? changesOn(lastAnswer, null, now).filter((change) => !change.startsWith('ttl ')) : [])]
  const changes = []
  if (holderOf(before) !== holderOf(now)) changes.push(`holder ${holderOf(before)} → ${holderOf(now)}`)
  if (before.fence !== now.fence) changes.push(`fence ${before.fence ?? '-'} → ${now.fence ?? '-'}`)
  const queue = (state) => state.waiters.map((w) => w.token).join(' ')
  if (before.waiters.length !== now.waiters.length) changes.push(`queue ${before.waiters.length} → ${now.waiters.length} waiting`)
  else if (queue(before) !== queue(now)) changes.push(`queue changed (${now.waiters.length} waiting)`)
  if (holderOf(before) === holderOf(now) && before.ttl !== null && now.ttl !== null) {
    if (now.ttl > before.ttl) changes.push('ttl renewed')
    else if (now.ttl < before.ttl) changes.push('ttl running')
  }
  return changes
}

// The changes of all hosts: one that every host shares is said once, the others after their host.
function describeChanges(hosts, perHost) {
  const shared = perHost[0].filter((change) => perHost.every((changes) => changes.includes(change)))
  const own = perHost.flatMap((changes, i) => {
    const rest = changes.filter((change) => !shared.includes(change))
    return rest.length ? [`${hosts[i]}: ${rest.join(', ')}`] : []
  })
  const all = [...shared, ...own]
  return all.length ? all : ['no change']
}

async function watch(locks, key, { interval, count, json }) {
  const redraw = !json && process.stdout.isTTY
  const recent = [] // the last changes, shown under the table when redrawing
  let previous = null
  const lastAnswers = [] // per host, its last state without error
  let stopNow
  const stopped = new Promise((resolve) => { stopNow = resolve })
  let stopping = false
  const stop = () => {
    stopping = true
    stopNow()
  }
  // Ctrl-C or a kill end the watch cleanly; a second one finds the default handler and ends the
  // process at once.
  process.once('SIGINT', stop)
  process.once('SIGTERM', stop)
  process.stdout.on('error', (error) => {
    if (error.code !== 'EPIPE') throw error
    stop() // the reader went away (relock watch … | head)
  })
  try {
    for (let refresh = 1; !stopping && (count === undefined || refresh <= count); refresh++) {
      const started = Date.now()
      const asked = locks.inspect(key)
      asked.catch(() => {}) // still pending when a stop closes the client
      const answer = await Promise.race([asked.then((states) => ({ states }), (error) => ({ error })), stopped.then(() => null)])
      if (!answer) break
      if (answer.error && !HOST_FAILURES.has(answer.error.code)) throw answer.error
      const states = answer.states || unanswered(locks.hosts, answer.error)
      const perHost = states.map((state, i) => changesOn(previous && previous[i], lastAnswers[i], state))
      states.forEach((state, i) => { if (!state.error) lastAnswers[i] = state })
      states.forEach((state, i) => {
        const before = previous && previous[i]
        if (state.error && !(before && before.error && before.error.code === state.error.code)) warnAbout(state.host, state.error)
        else if (!state.error && before && before.error) console.error(`relock: ${state.host} answers again`)
      })
      const time = new Date(started).toISOString()
      const hosts = states.map((s) => s.host)
      const first = [`watching ${key} every ${interval} ms`]
      const changes = previous ? describeChanges(hosts, perHost) : first
      // With a redraw the ttl runs down in the table itself; the log keeps what else changed.
      const notable = previous ? describeChanges(hosts, perHost.map((c) => c.filter((change) => change !== 'ttl running'))) : first
      previous = states
      if (json) console.log(JSON.stringify({ time, key, changes, hosts: states.map(stateJson) }))
      else if (redraw) {
        if (notable[0] !== 'no change') recent.push(`${time}  ${notable.join('; ')}`)
        recent.splice(0, recent.length - 10)
        process.stdout.write(`\x1b[H\x1b[2J${time}  relock watch ${key}, every ${interval} ms (Ctrl-C to stop)\n\n${render(states)}\n\nchanges:\n${recent.join('\n')}\n`)
      } else console.log(`${time}  ${key}  ${changes.join('; ')}\n${render(states)}\n`)
      if (count !== undefined && refresh >= count) break
      let timer
      await Promise.race([new Promise((resolve) => { timer = setTimeout(resolve, Math.max(0, interval - (Date.now() - started))) }), stopped])
      clearTimeout(timer)
    }
  } finally {
    process.off('SIGINT', stop)
    process.off('SIGTERM', stop)
  }
  // Stopped by a signal: the operator has seen the failures as they came.
  return stopping ? 0 : someHostFailed ? 1 : 0
}

// Looks at the keys a few at a time: one round trip per key, without flooding the hosts.
async function eachOf(items, concurrency, work) {
  let next = 0
  const worker = async () => {
    while (next < items.length) await work(items[next++])
  }
  await Promise.all(Array.from({ length: Math.min(concurrency, items.length) }, worker))
}

async function stats(locks, pattern, limit, json) {
  const keys = await locks.list(pattern, { limit })
  const rows = new Map()
  const rowOf = (host) => {
    if (!rows.has(host)) rows.set(host, { host, held: 0, withWaiters: 0, waiters: 0, lowestTtl: null, lowestTtlKey: null, highestFence: null, highestFenceKey: null, error: null })
    return rows.get(host)
  }
  locks.hosts.forEach(rowOf)
  const failed = (host, error) => {
    const row = rowOf(host)
    if (row.error) return
    row.error = error
    warnAbout(host, error)
  }
  for (const { host, error } of keys.failedHosts) failed(host, error)
  await eachOf(keys, 16, async (key) => {
    for (const state of await locks.inspect(key)) {
      if (state.error) {
        failed(state.host, state.error)
        continue
      }
      const row = rowOf(state.host)
      if (state.holder !== null) {
        row.held++
        if (state.ttl !== null && (row.lowestTtl === null || state.ttl < row.lowestTtl)) Object.assign(row, { lowestTtl: state.ttl, lowestTtlKey: key })
      }
      if (state.waiters.length > 0) {
        row.withWaiters++
        row.waiters += state.waiters.length
      }
      if (state.fence !== null && (row.highestFence === null || state.fence > row.highestFence)) Object.assign(row, { highestFence: state.fence, highestFenceKey: key })
    }
  })
  const limitReached = keys.length === limit
  if (json) return JSON.stringify({ pattern, keys: keys.length, limitReached, hosts: [...rows.values()].map((row) => ({ ...row, error: errorJson(row.error) })) }, null, 2)
  const withKey = (value, key) => (value === null ? '-' : `${value} (${key})`)
  const lines = [...rows.values()].map((row) => (row.error
    ? { host: row.host, held: `(unreachable: ${row.error.code})` }
    : { host: row.host, held: row.held, 'with waiters': row.withWaiters, waiters: row.waiters, 'lowest ttl': withKey(row.lowestTtl === null ? null : ms(row.lowestTtl), row.lowestTtlKey), 'highest fence': withKey(row.highestFence, row.highestFenceKey) }))
  const header = `${keys.length} lock key${keys.length === 1 ? '' : 's'} match ${pattern}${limitReached ? ` (the first ${limit}: --limit to look at more)` : ''}`
  return `${header}\n\n${table(lines, ['host', 'held', 'with waiters', 'waiters', 'lowest ttl', 'highest fence'])}`
}

async function main() {
  const options = parse(process.argv.slice(2))
  const [command, argument] = options.positional
  if (options.help || !command) {
    console.log(USAGE)
    return options.help ? 0 : 2
  }
  if (!['inspect', 'list', 'release', 'watch', 'stats', 'rwlock', 'semaphore'].includes(command)) throw new UsageError(`unknown command ${command}`)
  if (!['list', 'stats'].includes(command) && !argument) throw new UsageError(`${command} needs a key`)
  if (command !== 'watch') {
    for (const option of ['interval', 'count']) if (options[option] !== undefined) throw new UsageError(`--${option} is an option of watch`)
  }
  const locks = new Redlock(options.urls, { connectTimeout: 2000, commandTimeout: 2000 })
  try {
    if (command === 'inspect') console.log(await inspect(locks, argument, options.json))
    if (command === 'list') console.log(await list(locks, argument ?? '*', options.limit, options.json))
    if (command === 'release') console.log(await release(locks, argument, options.yes))
    if (command === 'rwlock') console.log(await readWrite(locks, argument, options.json))
    if (command === 'semaphore') console.log(await semaphore(locks, argument, options.json))
    if (command === 'watch') return await watch(locks, argument, { interval: options.interval ?? 500, count: options.count, json: options.json })
    if (command === 'stats') console.log(await stats(locks, argument ?? '*', options.limit, options.json))
    return someHostFailed ? 1 : 0
  } finally {
    await locks.close()
  }
}

main().then(
  (code) => { process.exitCode = code },
  (error) => {
    console.error(`relock: ${error.message}`)
    if (error instanceof UsageError) console.error(`\n${USAGE}`)
    process.exitCode = error instanceof UsageError ? 2 : 1
  },
)
