'use strict'

// An append-only JSONL history file per process or thread. Every record is written with a
// synchronous write, so a SIGKILLed client loses at most the record it was building, and
// nothing is ever invented afterwards.

const fs = require('node:fs')

class Recorder {
  constructor(file, who) {
    this.fd = fs.openSync(file, 'a')
    this.who = who
  }

  record(type, fields) {
    if (this.fd === null) return
    fs.writeSync(this.fd, JSON.stringify({ type, who: this.who, ...fields }) + '\n')
  }

  close() {
    if (this.fd !== null) fs.closeSync(this.fd)
    this.fd = null
  }
}

/** Reads every record of every .jsonl file in `dir`; a torn last line (a killed writer) is skipped. */
function readHistory(dir) {
  const records = []
  for (const name of fs.readdirSync(dir).filter((n) => n.endsWith('.jsonl')).sort()) {
    for (const line of fs.readFileSync(`${dir}/${name}`, 'utf8').split('\n')) {
      if (!line) continue
      try {
        records.push(JSON.parse(line))
      } catch {}
    }
  }
  return records
}

module.exports = { Recorder, readHistory }
