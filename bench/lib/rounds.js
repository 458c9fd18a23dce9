'use strict'

// Repeats a measurement of several contenders over rounds. Each round runs every contender once,
// starting one further along the list than the round before, so that a slow phase of this noisy
// machine does not always hit the same contender.

const { summarize } = require('./stats')

const started = performance.now()

function progress(message) {
  const seconds = ((performance.now() - started) / 1000).toFixed(0).padStart(4)
  process.stderr.write(`[${seconds}s] ${message}\n`)
}

function rotate(list, by) {
  const offset = by % list.length
  return [...list.slice(offset), ...list.slice(0, offset)]
}

// `measure(contender)` resolves to an object of metrics (numbers are summarized, other fields are
// kept as they are); a rejection is recorded as that run's error and the rounds go on. Resolves
// to one row per contender, in the given order.
async function runRounds({ label, contenders, rounds, measure }) {
  const rows = new Map(contenders.map((contender) => [contender, { name: contender.name, runs: [], errors: [] }]))
  for (let round = 0; round < rounds; round++) {
    for (const contender of rotate(contenders, round)) {
      progress(`${label} · round ${round + 1}/${rounds} · ${contender.name}`)
      const row = rows.get(contender)
      try {
        row.runs.push(await measure(contender))
      } catch (error) {
        progress(`  failed: ${error.message}`)
        row.errors.push(error.message)
      }
    }
  }
  return contenders.map((contender) => summarizeRow(rows.get(contender), contender))
}

function summarizeRow(row, contender) {
  const metrics = new Set(row.runs.flatMap((run) => Object.keys(run).filter((name) => typeof run[name] === 'number')))
  const summary = {}
  for (const metric of metrics) summary[metric] = summarize(row.runs.map((run) => run[metric]))
  return { ...row, isRelock: Boolean(contender.isRelock), summary }
}

module.exports = { runRounds, progress }
