// The reference UnixFS importer (ipfs-unixfs-importer, what helia uses) as an oracle:
// prints, one line per PATH, the root CID of that file or directory tree imported the
// way kubo's `ipfs add --cid-version=1 --raw-leaves -r --hidden` does (fixed 256 KiB
// chunks, balanced layout with at most 174 links a node, raw leaves, CIDv1, symlinks
// stored as UnixFS symlinks, not followed).
//
// usage: node unixfs-cid.mjs [--chunk-size N] [--max-links N] PATH...
// (--chunk-size and --max-links let tests build deep DAGs from small files.)

import { createReadStream } from 'node:fs'
import { lstat, readdir, readlink } from 'node:fs/promises'
import { basename, join } from 'node:path'
import { parseArgs } from 'node:util'
import { MemoryBlockstore } from 'blockstore-core/memory'
import { importer } from 'ipfs-unixfs-importer'
import { fixedSize } from 'ipfs-unixfs-importer/chunker'
import { balanced } from 'ipfs-unixfs-importer/layout'

const { values, positionals } = parseArgs({
  options: {
    'chunk-size': { type: 'string', default: '262144' },
    'max-links': { type: 'string', default: '174' }
  },
  allowPositionals: true
})

// Every entry under `fsPath`, parents before children, as importer candidates whose
// paths start with `name`. Directories are listed too, so empty ones are kept.
async function * candidates (fsPath, name) {
  const stat = await lstat(fsPath)
  if (stat.isSymbolicLink()) {
    yield { path: name, link: await readlink(fsPath) }
  } else if (stat.isDirectory()) {
    yield { path: name }
    for (const entry of await readdir(fsPath)) {
      yield * candidates(join(fsPath, entry), `${name}/${entry}`)
    }
  } else if (stat.isFile()) {
    yield { path: name, content: createReadStream(fsPath) }
  } else {
    throw new Error(`not a file, directory or symlink: ${fsPath}`)
  }
}

async function rootCid (fsPath) {
  const name = basename(fsPath)
  let root
  const options = {
    cidVersion: 1,
    rawLeaves: true,
    reduceSingleLeafToSelf: true,
    wrapWithDirectory: false,
    shardSplitStrategy: 'links-bytes',
    chunker: fixedSize({ chunkSize: Number(values['chunk-size']) }),
    layout: balanced({ maxChildrenPerNode: Number(values['max-links']) })
  }
  for await (const entry of importer(candidates(fsPath, name), new MemoryBlockstore(), options)) {
    if (entry.path === name) root = entry.cid
  }
  if (root === undefined) throw new Error(`the importer yielded no root for ${fsPath}`)
  return root.toString()
}

for (const fsPath of positionals) {
  process.stdout.write(`${await rootCid(fsPath)}\n`)
}
