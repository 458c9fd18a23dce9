'use strict'

// OpenTelemetry metrics of a client: how long acquires wait and locks are held, how many are
// held and waiting now. Labels stay bounded: the outcome, and a key group that the caller
// derives from the key (never the key itself, whose values are unbounded).

const OUTCOMES_OF_WAITS = new Set(['acquired', 'timeout', 'aborted', 'failed', 'closed'])
const OUTCOMES_OF_HOLDS = new Set(['released', 'lost', 'closed'])

function loadApi() {
  try {
    return require('@opentelemetry/api')
  } catch {
    return null
  }
}

/**
 * @param {{ meter?: object, keyGroup?: (key: string) => string }} options
 * @param {(message: string) => Error} invalid
 */
function createMetrics(options, invalid) {
  let meter = options.meter
  if (meter === undefined) {
    const api = loadApi()
    if (!api) throw invalid('options.metrics needs the optional peer dependency @opentelemetry/api (npm install @opentelemetry/api), or a meter in options.metrics.meter')
    meter = api.metrics.getMeter('relock', require('../package.json').version)
  }
  if (typeof meter?.createHistogram !== 'function' || typeof meter?.createObservableGauge !== 'function') {
    throw invalid('options.metrics.meter must be an OpenTelemetry Meter')
  }
  const keyGroup = options.keyGroup ?? (() => undefined)
  if (typeof keyGroup !== 'function') throw invalid('options.metrics.keyGroup must be a function of the key')

  const wait = meter.createHistogram('relock.lock.wait.duration', { unit: 's', description: 'Time from an acquire call to its outcome' })
  const hold = meter.createHistogram('relock.lock.hold.duration', { unit: 's', description: 'Time a lock taken by acquire was held' })
  const lost = meter.createCounter('relock.lock.lost', { description: 'Held locks that were lost' })
  let waiting = 0
  let held = 0
  meter.createObservableGauge('relock.locks.waiting', { description: 'acquire calls waiting now' }).addCallback((result) => result.observe(waiting))
  meter.createObservableGauge('relock.locks.held', { description: 'Locks held through handles now' }).addCallback((result) => result.observe(held))

  // A meter or keyGroup that throws must not break the lock's own work (a release not sent, an
  // acquire that fails after it took the lock): it becomes a process warning.
  const guarded = (record) => {
    try {
      record()
    } catch (error) {
      process.emitWarning(`relock: recording a metric failed: ${error && error.message}`)
    }
  }
  const labels = (key, outcome) => {
    const group = keyGroup(key)
    return group === undefined ? { 'relock.outcome': outcome } : { 'relock.outcome': outcome, 'relock.key_group': String(group) }
  }
  return {
    waitStarted() {
      waiting++
    },
    waitEnded(key, outcome, ms) {
      if (!OUTCOMES_OF_WAITS.has(outcome)) outcome = 'failed'
      waiting--
      if (outcome === 'acquired') held++
      guarded(() => wait.record(ms / 1000, labels(key, outcome)))
    },
    holdEnded(key, outcome, ms) {
      held--
      guarded(() => {
        hold.record(ms / 1000, labels(key, OUTCOMES_OF_HOLDS.has(outcome) ? outcome : 'released'))
        if (outcome === 'lost') lost.add(1, labels(key, outcome))
      })
    },
  }
}

module.exports = { createMetrics }
