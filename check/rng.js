'use strict'

// A small seeded PRNG (mulberry32): the same seed always gives the same sequence, so a fault
// schedule can be replayed from the seed printed by a run.

function createRng(seed) {
  let state = seed >>> 0
  const next = () => {
    state = (state + 0x6d2b79f5) >>> 0
    let t = state
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
  return {
    next,
    /** Whole number in [min, max], both included. */
    int: (min, max) => min + Math.floor(next() * (max - min + 1)),
    pick: (items) => items[Math.floor(next() * items.length)],
    chance: (probability) => next() < probability,
    /** Picks a name from [[name, weight], …]. */
    weighted(entries) {
      const total = entries.reduce((sum, [, weight]) => sum + weight, 0)
      let roll = next() * total
      for (const [name, weight] of entries) {
        roll -= weight
        if (roll < 0) return name
      }
      return entries[entries.length - 1][0]
    },
  }
}

/** Derives an independent seed for a named part of the run (a client, a thread). */
function deriveSeed(seed, label) {
  let hash = seed >>> 0
  for (const char of String(label)) hash = Math.imul(hash ^ char.charCodeAt(0), 0x01000193) >>> 0
  return hash
}

module.exports = { createRng, deriveSeed }
