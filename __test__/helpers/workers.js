'use strict'

const { fork } = require('node:child_process')
const path = require('node:path')

// Runs `count` copies of a fixture script as separate processes and resolves with the message
// each sent, rejecting if any exits with an error.
function runWorkers(fixture, count, args) {
  const script = path.join(__dirname, '..', 'fixtures', fixture)
  return Promise.all(
    Array.from({ length: count }, (_, index) => new Promise((resolve, reject) => {
      const child = fork(script, [...args, String(index)], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] })
      let message
      child.on('message', (m) => { if (m && m.records) message = m })
      child.on('error', reject)
      child.on('exit', (code) => (code === 0 ? resolve(message) : reject(new Error(`${fixture} worker ${index} exited with ${code}`))))
    })),
  )
}

module.exports = { runWorkers }
