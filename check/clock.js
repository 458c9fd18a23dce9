'use strict'

// All recorded times are CLOCK_MONOTONIC (process.hrtime) in milliseconds with microsecond
// precision: comparable across the processes and threads of one Linux machine.

function now() {
  return Number(process.hrtime.bigint() / 1000n) / 1000
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms))

module.exports = { now, sleep }
