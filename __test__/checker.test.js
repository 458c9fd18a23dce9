'use strict'

// Runs the fault-injecting checker for 60 s and expects a clean verdict, with enough grants and
// faults of several kinds for that verdict to mean something.

const { test } = require('node:test')
const assert = require('node:assert/strict')
const { spawn } = require('node:child_process')
const fs = require('node:fs')
const os = require('node:os')
const path = require('node:path')

const SEED = Number(process.env.RELOCK_CHECK_SEED ?? Math.floor(Math.random() * 2 ** 32))

test(`the checker finds no violation in 60 s of faults (seed ${SEED})`, { timeout: 240_000 }, async () => {
  const json = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'relock-check-test-')), 'summary.json')
  const script = path.join(__dirname, '..', 'check', 'run.js')
  const child = spawn(process.execPath, [script, '--seconds', '60', '--seed', String(SEED), '--json', json], { stdio: ['ignore', 'pipe', 'inherit'] })
  let output = ''
  child.stdout.on('data', (chunk) => { output += chunk })
  const code = await new Promise((resolve) => child.on('exit', resolve))
  console.log(output)
  const summary = JSON.parse(fs.readFileSync(json, 'utf8'))
  fs.rmSync(path.dirname(json), { recursive: true, force: true })
  assert.equal(summary.seed, SEED)
  assert.ok(summary.grants > 200, `only ${summary.grants} grants`)
  const kindsStarted = Object.entries(summary.faults).filter(([, { started }]) => started > 0).map(([kind]) => kind)
  assert.ok(kindsStarted.length >= 6, `faults of only ${kindsStarted.length} kinds: ${kindsStarted.join(', ')}`)
  assert.equal(code, 0, `the checker reported violations (seed ${SEED}): ${JSON.stringify(summary.violationsByPromise)}`)
})
