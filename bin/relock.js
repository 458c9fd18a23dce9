#!/usr/bin/env node
'use strict'

// relock's operator command: look at locks and, when needed, release one by force.

const { Redlock } = require('..')

const USAGE = `usage: relock <command> [arguments] [--url URL ...] [--json]

commands:
  inspect <key>             holder token, remaining ttl, fence and fair queue of a lock, per host
  list [pattern]            locks whose key matches a glob pattern (default *), found with SCAN
                            (--limit N: at most N keys, default 100)
  release <key> --yes       release a lock whoever holds it (a fair waiter next in line gets it)

options:
  --url URL                 a Redis URL; repeat it for Redlock hosts
                            (default: $RELOCK_URLS, comma-separated, or redis://127.0.0.1:6379)
  --json                    print JSON instead of tables`

function parse(argv) {
  const options = { urls: [], json: false, yes: false, limit: 100, positional: [] }
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]
    if (arg === '--url') options.urls.push(argv[++i])
    else if (arg === '--json') options.json = true
    else if (arg === '--yes') options.yes = true
    else if (arg === '--limit') options.limit = limitOf(argv[++i])
    else if (arg === '--help' || arg === '-h') options.help = true
    else if (arg.startsWith('--')) throw new UsageError(`unknown option ${arg}`)
    else options.positional.push(arg)
  }
  if (options.urls.length === 0) options.urls = (process.env.RELOCK_URLS || 'redis://127.0.0.1:6379').split(',')
  if (options.urls.some((url) => !url)) throw new UsageError('--url needs a value')
  return options
}

class UsageError extends Error {}

function limitOf(value) {
  const limit = Number(value)
  if (!Number.isInteger(limit) || limit < 1 || limit > 10000) throw new UsageError(`--limit must be a whole number from 1 to 10000, got ${value === undefined ? 'nothing' : JSON.stringify(value)}`)
  return limit
}

function table(rows, columns) {
  const widths = columns.map((column) => Math.max(column.length, ...rows.map((row) => String(row[column] ?? '').length)))
  const line = (cells) => cells.map((cell, i) => String(cell ?? '').padEnd(widths[i])).join('  ').trimEnd()
  return [line(columns), line(widths.map((width) => '-'.repeat(width))), ...rows.map((row) => line(columns.map((c) => row[c])))].join('\n')
}

const ms = (value) => (value === null || value === undefined ? '-' : `${value} ms`)
const holderOf = (state) => {
  if (state.error) return `(unreachable: ${state.error.code})`
  return state.holder ?? (state.foreign ? '(not a relock lock)' : '(free)')
}

// Hosts that could not be asked are marked in the output and make the command exit 1, after
// the answers of the others have been printed.
let someHostFailed = false
function warnAbout(host, error) {
  someHostFailed = true
  console.error(`relock: ${host} did not answer: ${error.message} (${error.code})`)
}

async function inspect(locks, key, json) {
  const states = await locks.inspect(key)
  for (const state of states) if (state.error) warnAbout(state.host, state.error)
  if (json) return JSON.stringify(states.map((state) => ({ ...state, error: state.error && { code: state.error.code, message: state.error.message } })), null, 2)
  const hosts = table(states.map((s) => ({ host: s.host, holder: holderOf(s), ttl: ms(s.ttl), fence: s.fence ?? '-', waiting: s.waiters.length })), ['host', 'holder', 'ttl', 'fence', 'waiting'])
  const queue = states.flatMap((s) => s.waiters.map((w, position) => ({ host: s.host, position: position + 1, token: w.token, 'asks for': ms(w.ttl), 'dropped in': ms(w.expiresIn) })))
  return queue.length ? `${hosts}\n\nfair queue:\n${table(queue, ['host', 'position', 'token', 'asks for', 'dropped in'])}` : hosts
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

async function release(locks, key, yes) {
  if (!yes) throw new UsageError(`releasing '${key}' takes it from its holder, who may still be working under it: add --yes to confirm`)
  return (await locks.forceRelease(key)) ? `released '${key}'` : `'${key}' was not held`
}

async function main() {
  const options = parse(process.argv.slice(2))
  const [command, argument] = options.positional
  if (options.help || !command) {
    console.log(USAGE)
    return options.help ? 0 : 2
  }
  if (!['inspect', 'list', 'release'].includes(command)) throw new UsageError(`unknown command ${command}`)
  if (command !== 'list' && !argument) throw new UsageError(`${command} needs a key`)
  const locks = new Redlock(options.urls, { connectTimeout: 2000, commandTimeout: 2000 })
  try {
    if (command === 'inspect') console.log(await inspect(locks, argument, options.json))
    if (command === 'list') console.log(await list(locks, argument ?? '*', options.limit, options.json))
    if (command === 'release') console.log(await release(locks, argument, options.yes))
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
