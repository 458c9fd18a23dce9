'use strict'

// Percentiles of samples and the summary (median and range) of repeated runs.

// Nearest-rank percentile of numbers already sorted ascending.
function percentileOfSorted(sorted, fraction) {
  if (sorted.length === 0) return NaN
  const rank = Math.ceil(fraction * sorted.length) - 1
  return sorted[Math.min(sorted.length - 1, Math.max(0, rank))]
}

function sortedCopy(values) {
  return Float64Array.from(values).sort()
}

function median(values) {
  const sorted = sortedCopy(values)
  if (sorted.length === 0) return NaN
  const middle = sorted.length >> 1
  return sorted.length % 2 ? sorted[middle] : (sorted[middle - 1] + sorted[middle]) / 2
}

// The median and range of one metric over the runs that produced it.
function summarize(values) {
  const finite = values.filter(Number.isFinite)
  if (finite.length === 0) return null
  return { median: median(finite), min: Math.min(...finite), max: Math.max(...finite), runs: finite.length }
}

module.exports = { percentileOfSorted, sortedCopy, median, summarize }
