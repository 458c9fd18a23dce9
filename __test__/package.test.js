'use strict'

// The package as a user meets it: packed with `npm pack`, installed from the tarballs (the main
// package and the linux-x64-gnu platform package, as a release publishes them) into a fresh
// project outside the repository, and used from CommonJS, ES modules and TypeScript.

const { test, before, after } = require('node:test')
const assert = require('node:assert/strict')
const { execFileSync } = require('node:child_process')
const fs = require('node:fs')
const os = require('node:os')
const path = require('node:path')

const { RedisServer } = require('../tools/redis-server')

const root = path.join(__dirname, '..')
const tsc = path.join(root, 'node_modules', 'typescript', 'bin', 'tsc')
let work
let project
let server

function run(command, args, cwd) {
  return execFileSync(command, args, { cwd, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], timeout: 120000 })
}

before(async () => {
  server = await RedisServer.start()
  work = fs.mkdtempSync(path.join(os.tmpdir(), 'relock-package-'))
  const platform = path.join(work, 'linux-x64-gnu')
  fs.cpSync(path.join(root, 'npm', 'linux-x64-gnu'), platform, { recursive: true })
  fs.copyFileSync(path.join(root, 'relock.linux-x64-gnu.node'), path.join(platform, 'relock.linux-x64-gnu.node'))
  run('npm', ['pack', '--silent', '--pack-destination', work], root)
  run('npm', ['pack', '--silent', '--pack-destination', work], platform)
  project = path.join(work, 'app')
  fs.mkdirSync(project)
  fs.writeFileSync(path.join(project, 'package.json'), JSON.stringify({ name: 'app', version: '1.0.0', private: true }))
  run('npm', ['install', '--no-audit', '--no-fund', '--offline', path.join(work, 'relock-0.1.0.tgz'), path.join(work, 'relock-linux-x64-gnu-0.1.0.tgz')], project)
})

after(async () => {
  await server.stop()
  fs.rmSync(work, { recursive: true, force: true })
})

test('the tarball holds only what a user needs', () => {
  const files = run('tar', ['-tzf', path.join(work, 'relock-0.1.0.tgz')], work).trim().split('\n').sort()
  assert.deepEqual(files, [
    'package/LICENSE', 'package/README.md', 'package/bin/relock.js', 'package/binding.d.ts', 'package/binding.js',
    'package/index.d.ts', 'package/index.js', 'package/index.mjs',
    'package/lib/direct.js', 'package/lib/errors.js', 'package/lib/lock.js', 'package/lib/metrics.js', 'package/lib/options.js', 'package/lib/primitives.js', 'package/lib/redlock.js',
    'package/package.json',
  ])
  const platformFiles = run('tar', ['-tzf', path.join(work, 'relock-linux-x64-gnu-0.1.0.tgz')], work).trim().split('\n').sort()
  assert.ok(platformFiles.includes('package/relock.linux-x64-gnu.node'), platformFiles.join())
})

test('require() works from the installed package', () => {
  fs.writeFileSync(path.join(project, 'cjs.js'), `
    const { Redlock, RelockError } = require('relock')
    const locks = new Redlock(process.argv[2])
    locks.lock('pack:cjs', 1000).then(async (token) => {
      console.log(typeof token === 'string' && RelockError.name === 'RelockError' ? 'ok' : 'bad')
      await locks.close()
    })
  `)
  assert.equal(run('node', ['cjs.js', server.url], project).trim(), 'ok')
})

test('import works from the installed package', () => {
  fs.writeFileSync(path.join(project, 'esm.mjs'), `
    import { Redlock, Lock } from 'relock'
    const locks = new Redlock(process.argv[2])
    const lock = await locks.acquire('pack:esm')
    console.log(lock instanceof Lock && (await lock.release()) ? 'ok' : 'bad')
    await locks.close()
  `)
  assert.equal(run('node', ['esm.mjs', server.url], project).trim(), 'ok')
})

test('TypeScript under strict with node16 and bundler resolution, then run', () => {
  fs.writeFileSync(path.join(project, 'main.ts'), `
    import { Redlock, RelockError, type Lock, type AcquireOptions } from 'relock'
    async function main(url: string): Promise<void> {
      const locks = new Redlock(url, { commandTimeout: 1000 })
      const options: AcquireOptions = { ttl: 2000, waitTimeout: 1000 }
      const total: number = await locks.using('pack:ts', options, async (lock: Lock) => lock.fence)
      try {
        await locks.lock('', 1)
      } catch (error) {
        if (error instanceof RelockError && error.code === 'ERR_RELOCK_INVALID_ARGUMENT') console.log(total > 0 ? 'ok' : 'bad')
      }
      await locks.close()
    }
    void main(process.argv[2] ?? '')
  `)
  for (const [module, resolution] of [['node16', 'node16'], ['esnext', 'bundler']]) {
    run(process.execPath, [tsc, '--strict', '--noEmit', '--module', module, '--moduleResolution', resolution, '--target', 'es2022', '--types', 'node', '--typeRoots', path.join(root, 'node_modules', '@types'), 'main.ts'], project)
  }
  run(process.execPath, [tsc, '--strict', '--module', 'node16', '--moduleResolution', 'node16', '--target', 'es2022', '--types', 'node', '--typeRoots', path.join(root, 'node_modules', '@types'), 'main.ts'], project)
  assert.equal(run('node', ['main.js', server.url], project).trim(), 'ok')
})

test('the relock command is installed', () => {
  execFileSync('redis-cli', ['-p', String(server.port), 'SET', 'pack:held', '0b7e9a52-4f1c-4e8a-9d3b-5a6c7d8e9f01', 'PX', '60000'])
  const output = run(path.join(project, 'node_modules', '.bin', 'relock'), ['inspect', 'pack:held', '--url', server.url], project)
  assert.match(output, /0b7e9a52-4f1c-4e8a-9d3b-5a6c7d8e9f01/)
})
