'use strict'

const { test } = require('node:test')
const assert = require('node:assert/strict')
const { spawnSync } = require('node:child_process')
const path = require('node:path')

test('a short soak: mixed load for 5 s with only the expected errors, no lost update, no overrun', () => {
  const soak = path.join(__dirname, '..', 'bench', 'soak.js')
  const result = spawnSync(process.execPath, ['--expose-gc', '--unhandled-rejections=strict', soak, '--seconds', '5', '--json'], { encoding: 'utf8', timeout: 60000 })
  assert.equal(result.status, 0, `${result.stdout}\n${result.stderr}`)
  const report = JSON.parse(result.stdout)
  assert.ok(report.operations > 10000, `only ${report.operations} operations`)
  assert.ok(report.contendedAcquisitions > 100, `only ${report.contendedAcquisitions} contended acquisitions`)
  assert.deepEqual(report.unexpectedErrors, [])
  assert.equal(report.lostUpdates, 0)
  for (const code of Object.keys(report.errorsByCode)) assert.ok(['ERR_RELOCK_WAIT_TIMEOUT', 'ABORT_ERR', 'ERR_RELOCK_LOCK_LOST'].includes(code), code)
  assert.ok(report.errorsByCode.ABORT_ERR > 0 && report.errorsByCode.ERR_RELOCK_WAIT_TIMEOUT > 0, 'aborts and time-outs were exercised')
})
