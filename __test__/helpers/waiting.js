'use strict'

const assert = require('node:assert/strict')
const { sleep } = require('../../tools/redis-server')

// Resolves with the reason when the lock's signal aborts. The timer keeps the event loop alive
// meanwhile: the native watchdog deliberately does not, so that a process whose work is done
// can exit.
function lostWithin(lock, ms) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`the lock was not reported lost within ${ms} ms`)), ms)
    lock.signal.addEventListener('abort', () => { clearTimeout(timer); resolve(lock.signal.reason) }, { once: true })
  })
}

// Retries `attempt` until it resolves to something truthy (failures count as no), and fails
// the test if that does not happen within `tries` tries, 30 ms apart.
async function eventually(attempt, what, tries = 100) {
  for (let i = 0; i < tries; i++) {
    const value = await attempt().catch(() => null)
    if (value) return value
    await sleep(30)
  }
  assert.fail(`${what} did not happen`)
}

module.exports = { lostWithin, eventually }
