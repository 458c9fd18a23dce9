'use strict'

// A process that only waits fairly for a lock, to be SIGKILLed by the dead fair waiter probe.
// argv: url, key, ttl

const { Redlock } = require('..')

const [url, key, ttl] = process.argv.slice(2)
const locks = new Redlock(url, { connectTimeout: 300, commandTimeout: 300 })
locks.acquire(key, { fair: true, ttl: Number(ttl), waitTimeout: 60000 }).catch(() => {})
process.send('waiting')
setInterval(() => {}, 1000)
