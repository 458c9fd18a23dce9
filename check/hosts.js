'use strict'

// The redis-server processes of a run: started on free loopback ports, restarted in place by
// the fault injector, and always stopped by PID (also when the run dies on an error).

const { spawnSync } = require('node:child_process')
const { RedisServer } = require('../tools/redis-server')

/** Major version of the redis-server on PATH (DEBUG needs an explicit switch from 7 on). */
function redisMajorVersion() {
  const probe = spawnSync('redis-server', ['--version'], { encoding: 'utf8' })
  if (probe.error || probe.status !== 0) throw new Error('redis-server is not on PATH')
  const match = /v=(\d+)\./.exec(probe.stdout)
  return match ? Number(match[1]) : 0
}

/**
 * A host of a run: a throwaway redis-server (`tools/redis-server.js`), with AOF
 * `appendfsync always` when `persistent`, and DEBUG allowed when `debugCommand`.
 */
const Host = {
  async start({ persistent, debugCommand, name }) {
    const args = persistent ? ['--appendonly', 'yes', '--appendfsync', 'always'] : []
    if (debugCommand) args.push('--enable-debug-command', 'yes')
    const host = await RedisServer.start(args)
    host.name = name
    host.persistent = persistent
    return host
  },
}

module.exports = { Host, redisMajorVersion }
