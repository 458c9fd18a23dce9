'use strict'

// Comparisons derived from the raw results, and the markdown report.

// --- comparisons -------------------------------------------------------------------------

function bestPeer(rows, metric) {
  let best = null
  for (const row of rows) {
    const value = row.summary[metric]?.median
    if (!row.isRelock && Number.isFinite(value) && (!best || value > best.value)) best = { name: row.name, value }
  }
  return best
}

// Marks each relock row of a table with its median over the best peer's median (higher is
// better for `metric`), and the best peer row itself.
function compareWithBestPeer(table, metric) {
  const best = bestPeer(table.rows, metric)
  table.bestPeer = best && { ...best, metric }
  if (!best) return
  for (const row of table.rows) {
    const value = row.summary[metric]?.median
    if (row.isRelock && Number.isFinite(value)) row.timesBestPeer = value / best.value
  }
}

function pipelinedCeiling(results) {
  return results.s5?.rows.find((row) => row.isPipelinedCeiling)?.summary.opsPerSecond?.median
}

// Scenario 2's throughput of every library as a share of the ioredis pipelined ceiling.
function scenario2VersusCeiling(results) {
  const ceiling = pipelinedCeiling(results)
  if (!results.s2 || !Number.isFinite(ceiling)) return null
  return results.s2.rows.map((row) => {
    const cyclesPerSecond = row.summary.cyclesPerSecond?.median
    return { name: row.name, cyclesPerSecond, shareOfCeiling: cyclesPerSecond / ceiling }
  })
}

function addComparisons(results) {
  for (const table of [results.s1, results.s2, ...(results.s3?.tables ?? []), ...(results.s7?.tables ?? []), ...(results.s8?.tables ?? [])]) {
    if (table) compareWithBestPeer(table, 'cyclesPerSecond')
  }
  if (results.s4) compareWithBestPeer(results.s4, 'acquisitionsPerSecond')
  if (results.s5) results.s5.scenario2VersusCeiling = scenario2VersusCeiling(results)
}

// --- formatting --------------------------------------------------------------------------

const integer = (value) => Math.round(value).toLocaleString('en-US')
const decimals = (digits) => (value) => value.toLocaleString('en-US', { minimumFractionDigits: digits, maximumFractionDigits: digits })
const percent = (value) => `${(value * 100).toFixed(1)} %`

// "median [min–max]" of one metric of a row; the range is left out for a single run.
function cell(row, metric, format) {
  const summary = row.summary[metric]
  if (!summary) return '—'
  if (summary.runs === 1 || summary.min === summary.max) return format(summary.median)
  return `${format(summary.median)} [${format(summary.min)}–${format(summary.max)}]`
}

function ratioCell(row, table) {
  if (row.timesBestPeer !== undefined) return `**${row.timesBestPeer.toFixed(2)}×**`
  if (table.bestPeer && row.name === table.bestPeer.name) return 'best peer'
  return ''
}

function markdownTable(headers, lines) {
  const escape = (text) => String(text).replaceAll('|', '\\|')
  return [
    `| ${headers.map(escape).join(' | ')} |`,
    `| ${headers.map((_, index) => (index === 0 ? '---' : '---:')).join(' | ')} |`,
    ...lines.map((line) => `| ${line.map(escape).join(' | ')} |`),
  ].join('\n')
}

// The rows that had failures, with how often and the first message.
function errorNotes(rows) {
  const notes = rows
    .filter((row) => row.errors.length > 0)
    .map((row) => `- ${row.name}: ${row.errors.length} failed run(s): ${row.errors[0]}`)
  return notes.length ? `\nFailures:\n${notes.join('\n')}\n` : ''
}

function throughputSection(table) {
  const rows = table.rows.map((row) => [
    row.name,
    cell(row, 'cyclesPerSecond', integer),
    cell(row, 'p50Us', integer),
    cell(row, 'p99Us', integer),
    cell(row, 'cpuUsPerCycle', decimals(1)),
    ratioCell(row, table),
  ])
  const loops = table.loops === 1 ? '1 loop' : `${table.loops} concurrent loops`
  const hosts = table.hosts === 1 ? '1 host' : `${table.hosts} hosts (Redlock)`
  return [
    `### ${table.title}`,
    '',
    `${hosts}, ${loops}, a fresh key each cycle, ${table.durationMs / 1000} s per run. Latency is one lock + unlock cycle; CPU is this process's (every thread) per cycle.${table.note ? ` ${table.note}` : ''}`,
    '',
    markdownTable(['library / mode', 'cycles/s', 'p50 µs', 'p99 µs', 'CPU µs/cycle', 'cycles/s × best peer'], rows),
    errorNotes(table.rows),
  ].join('\n')
}

function contentionSection(s4) {
  const rows = s4.rows.map((row) => [
    row.name,
    cell(row, 'totalMs', (ms) => decimals(2)(ms / 1000)),
    cell(row, 'acquisitionsPerSecond', integer),
    cell(row, 'ownerChangeShare', percent),
    cell(row, 'waitP50Ms', decimals(1)),
    cell(row, 'waitP99Ms', decimals(1)),
    cell(row, 'waitMaxMs', decimals(1)),
    cell(row, 'lostUpdates', integer),
    cell(row, 'fifoShare', percent),
    cell(row, 'fifoShareContended', percent),
    cell(row, 'balance', decimals(2)),
    ratioCell(row, s4),
  ])
  const perWorker = s4.rows.map((row) => [row.name, ...row.runs.map((run) => run.perWorkerCountsAtFirstFinish.join(' / '))])
  const rounds = Math.max(...s4.rows.map((row) => row.runs.length))
  return [
    `### ${s4.title}`,
    '',
    'Each worker: blocking acquire, GET counter, SET counter + 1, release; all wait up to 60 s. ' +
      '*owner changes*: share of consecutive acquisitions that went to another worker. *wait*: from the start of acquire to holding the lock. ' +
      '*lost*: increments made minus the final counter. *FIFO*: share of acquisitions that went to the worker waiting longest at that moment; ' +
      '*FIFO contended*: the same, counting only acquisitions made while another worker was waiting too. ' +
      '*balance*: fewest / most acquisitions among the workers at the moment the first worker finished (1.00 = even).',
    '',
    markdownTable(['library / mode', 'total s', 'acquisitions/s', 'owner changes', 'wait p50 ms', 'wait p99 ms', 'wait max ms', 'lost', 'FIFO', 'FIFO contended', 'balance', 'acq/s × best peer'], rows),
    errorNotes(s4.rows),
    'Acquisitions per worker when the first worker finished, per round:',
    '',
    markdownTable(['library / mode', ...Array.from({ length: rounds }, (_, index) => `round ${index + 1}`)], perWorker),
    '',
  ].join('\n')
}

function ceilingSection(s5) {
  const rows = s5.rows.map((row) => [row.name, cell(row, 'opsPerSecond', integer), cell(row, 'p50Us', integer), cell(row, 'p99Us', integer)])
  const parts = [
    `### ${s5.title}`,
    '',
    `redis-benchmark: ${integer(s5.requests)} requests per run. The ioredis row counts lock + unlock pairs (2 commands each), like the cycles of scenarios 1–3.`,
    '',
    markdownTable(['measurement', 'ops/s (pairs/s for ioredis)', 'p50 µs', 'p99 µs'], rows),
    errorNotes(s5.rows),
  ]
  if (s5.scenario2VersusCeiling) {
    const shares = s5.scenario2VersusCeiling.map((entry) => [entry.name, Number.isFinite(entry.cyclesPerSecond) ? integer(entry.cyclesPerSecond) : '—', Number.isFinite(entry.shareOfCeiling) ? percent(entry.shareOfCeiling) : '—'])
    parts.push('Scenario 2 (64 concurrent loops, 1 host) as a share of the ioredis pipelined ceiling:', '', markdownTable(['library / mode', 'cycles/s (median)', '% of ceiling'], shares), '')
  }
  return parts.join('\n')
}

function memorySection(s6) {
  const [row] = s6.rows
  const megabytes = decimals(1)
  const summary = markdownTable(
    ['library / mode', 'cycles/s', 'RSS after warm-up MB', 'RSS growth MB', 'RSS growth after the first tenth MB', 'RSS peak growth MB', 'heap after warm-up MB', 'heap growth MB'],
    [[row.name, cell(row, 'cyclesPerSecond', integer), cell(row, 'rssAfterWarmupMB', megabytes), cell(row, 'rssGrowthMB', megabytes), cell(row, 'rssGrowthAfterFirstTenthMB', megabytes), cell(row, 'rssPeakGrowthMB', megabytes), cell(row, 'heapAfterWarmupMB', megabytes), cell(row, 'heapGrowthMB', megabytes)]],
  )
  const samples = (row.runs[0]?.samples ?? []).map((_, index) => [
    integer(row.runs[0].samples[index].cycles),
    ...row.runs.map((run) => `${megabytes(run.samples[index].rssMB)} / ${megabytes(run.samples[index].heapUsedMB)} / ${megabytes(run.samples[index].heapTotalMB)}`),
  ])
  const gc = row.runs.every((run) => run.gcExposed) ? 'after global.gc()' : 'without global.gc() (not exposed)'
  return [
    `### ${s6.title}`,
    '',
    `Warm-up: ${integer(s6.warmupCycles)} cycles first. Growth is from the sample after the warm-up to the last sample; samples taken ${gc}.`,
    '',
    summary,
    errorNotes(s6.rows),
    'Samples, RSS MB / V8 heapUsed MB / V8 heapTotal MB, cycles counted after the warm-up:',
    '',
    markdownTable(['cycles', ...row.runs.map((_, index) => `round ${index + 1}`)], samples),
    '',
  ].join('\n')
}

const loads = (averages) => averages.map((load) => load.toFixed(2)).join(' ')

function headerSection(results) {
  const { machine, versions, unavailable, settings } = results
  const peers = Object.entries(versions).map(([name, version]) => `${name} ${version}`).join(', ')
  const skipped = Object.entries(unavailable)
  return [
    '# relock benchmark',
    '',
    `${results.startedAt} · ${machine.cpuModel}, ${machine.cores} cores · Node ${machine.node} · redis-server ${machine.redisServer} · load average ${loads(machine.loadAverageAtStart)} at start, ${loads(machine.loadAverageAtEnd)} at end`,
    '',
    `Versions: ${peers}. relock build: ${results.relockBuild.map((entry) => `${entry.file} sha256 ${entry.sha256} (${entry.modified})`).join(', ')}.`,
    '',
    ...(results.relockBuildChangedDuringRun ? ['**Warning: relock\'s index.js or native addon changed on disk during this run; later scenarios (and the forked workers) may have measured a different build.**', ''] : []),
    `Run: \`${results.command}\`, ${settings.rounds} round(s), took ${decimals(0)(results.durationSeconds)} s. Cells are median [min–max] over the rounds; ` +
      'each round runs every library once, in an order rotated from round to round. "× best peer" divides relock\'s median by the best peer\'s median in the same table.',
    '',
    'Modes: *defaults* uses the library\'s documented defaults; *tuned* shortens the pauses between attempts ' +
      '(Redlock family: retryDelay 10 ms ± retryJitter 5 ms; redis-semaphore: retryInterval 5 ms, lockTimeout 5 s; ioredis-plain: retry every 5 ms instead of 100 ms). ' +
      'Lock ttl 5 s everywhere (redis-semaphore defaults: its own 10 s). In scenario 4 every library waits without a practical limit ' +
      '(Redlock family: retryCount -1; redis-semaphore: acquireTimeout 60 s; relock: waitTimeout 60 s; ioredis-plain: 60 s). ' +
      'ioredis-plain is the hand-written recipe: SET NX PX with a uuid token, a Lua compare-and-delete through defineCommand, retry on a timer.',
    '',
    skipped.length ? `Skipped: ${skipped.map(([name, reason]) => `${name} (${reason})`).join('; ')}.` : 'Every peer installed and loaded.',
    '',
  ].join('\n')
}

function renderMarkdown(results) {
  const sections = [headerSection(results)]
  if (results.s1) sections.push('## 1. Sequential lock + unlock', throughputSection(results.s1))
  if (results.s2) sections.push('## 2. 64 concurrent lock + unlock loops', throughputSection(results.s2))
  if (results.s3) sections.push('## 3. Redlock over 3 and 5 hosts', ...results.s3.tables.map(throughputSection))
  if (results.s7) sections.push('## 7. At network distance (a proxy delays each chunk, each way)', ...results.s7.tables.map(throughputSection))
  if (results.s8) sections.push('## 8. Semaphores, multi-key locks, read-write locks (64 loops, one host)', ...results.s8.tables.map(throughputSection))
  if (results.s4) sections.push('## 4. Contention across processes', contentionSection(results.s4))
  if (results.s5) sections.push('## 5. The ceiling', ceilingSection(results.s5))
  if (results.s6) sections.push('## 6. Memory', memorySection(results.s6))
  return `${sections.join('\n\n')}\n`
}

module.exports = { addComparisons, renderMarkdown }
