'use strict'
// Azurite (the Azure Blob emulator, a devDependency) on a free loopback port.
const fs = require('node:fs')
const os = require('node:os')
const path = require('node:path')
const { spawn } = require('node:child_process')
const { freePort, waitFor } = require('./redis-servers')

const AZURITE_KEY = 'Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=='
const tmp = (n) => fs.mkdtempSync(path.join(os.tmpdir(), `rs-store-${n}-`))

/** Azurite (Azure Blob emulator) on a free port, with `container` created. */
async function startAzurite(container) {
  const port = await freePort()
  const proc = spawn(path.join(__dirname, '..', '..', 'node_modules', '.bin', 'azurite-blob'), ['--blobHost', '127.0.0.1', '--blobPort', String(port), '--location', tmp('azurite'), '--silent', '--skipApiVersionCheck'], { stdio: 'ignore' })
  const { BlobServiceClient, StorageSharedKeyCredential } = require('@azure/storage-blob')
  const endpoint = `http://127.0.0.1:${port}/devstoreaccount1`
  const svc = new BlobServiceClient(endpoint, new StorageSharedKeyCredential('devstoreaccount1', AZURITE_KEY))
  try {
    await waitFor('azurite', async () => (await svc.getContainerClient(container).createIfNotExists(), true), 20_000)
  } catch (e) {
    proc.kill('SIGKILL')
    throw e
  }
  return { endpoint, stop: () => proc.kill('SIGKILL') }
}

module.exports = { startAzurite, AZURITE_KEY }
