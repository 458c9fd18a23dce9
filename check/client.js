'use strict'

// A client process: its main thread and its worker threads each run one environment. The
// orchestrator talks to the process over IPC ('block' one thread's event loop, 'stop'); the
// main thread relays to the workers.

const { isMainThread, Worker, workerData, parentPort } = require('node:worker_threads')
const { startEnvironment } = require('./environment')

if (isMainThread) {
  const config = JSON.parse(process.argv[2])
  const environment = startEnvironment({ ...config, thread: 0 })
  const workers = Array.from({ length: config.threads - 1 }, (_, i) => {
    const worker = new Worker(__filename, { workerData: { ...config, thread: i + 1 } })
    const done = new Promise((resolve) => {
      worker.on('message', (message) => message === 'stopped' && resolve())
      worker.on('exit', resolve)
    })
    return { worker, done }
  })
  process.on('message', async (message) => {
    if (message.cmd === 'block') {
      if (message.thread === 0) environment.block(message.ms)
      else workers[message.thread - 1]?.worker.postMessage(message)
    } else if (message.cmd === 'stop') {
      for (const { worker } of workers) worker.postMessage(message)
      await environment.stop()
      await Promise.all(workers.map(({ done }) => done))
      process.send({ stopped: true }, () => process.exit(0))
    }
  })
  process.send({ ready: true })
} else {
  const environment = startEnvironment(workerData)
  parentPort.on('message', async (message) => {
    if (message.cmd === 'block') environment.block(message.ms)
    else if (message.cmd === 'stop') {
      await environment.stop()
      parentPort.postMessage('stopped')
      process.exit(0)
    }
  })
}
