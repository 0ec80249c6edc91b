import { describe, expect, it } from 'vitest';
import { InvalidWalNameError, parseWalName, segmentName, segmentNumber } from '../../src/wal/names.js';
import { InvalidWalHeaderError, parseLongHeader } from '../../src/wal/header.js';
import { validateSegment } from '../../src/wal/validate.js';
import { syntheticSegment } from '../support/synthetic-wal.js';

describe('WAL file names', () => {
  it('parses each kind PostgreSQL archives', () => {
    expect(parseWalName('000000010000000A000000FF')).toEqual({
      name: '000000010000000A000000FF',
      kind: 'segment',
      timeline: 1,
      segment: '000000010000000A000000FF',
    });
    expect(parseWalName('00000002.history')).toMatchObject({ kind: 'history', timeline: 2 });
    expect(parseWalName('0000000100000000000000F0.00000028.backup')).toMatchObject({
      kind: 'backup',
      timeline: 1,
      segment: '0000000100000000000000F0',
    });
    expect(parseWalName('0000000A0000000000000003.partial')).toMatchObject({ kind: 'partial', timeline: 10 });
  });

  it.each([
    '',
    '../000000010000000000000001',
    'pg_wal/000000010000000000000001',
    '000000010000000000000001/',
    '00000001000000000000000',
    '0000000100000000000000011',
    '000000010000000a00000001',
    '00000000.history',
    '00000001.History',
    'RECOVERYXLOG',
    '000000010000000000000001.partial.tmp',
    '000000010000000000000001\0',
    '000000010000000000000001\n',
  ])('rejects %j', (name) => {
    expect(() => parseWalName(name)).toThrow(InvalidWalNameError);
  });

  it('numbers segments by segment size', () => {
    expect(segmentNumber('000000010000000100000002', 16 << 20)).toBe(256n + 2n);
    expect(segmentNumber('000000010000000100000002', 1 << 20)).toBe(4096n + 2n);
    expect(segmentName(1, 258n, 16 << 20)).toBe('000000010000000100000002');
    expect(segmentName(3, 4098n, 1 << 20)).toBe('000000030000000100000002');
  });
});

describe('WAL segment header', () => {
  const name = '000000010000000000000003';

  it('reads system identifier, sizes and version', () => {
    const seg = syntheticSegment({ name, systemIdentifier: 18446744073709551615n });
    const h = parseLongHeader(seg);
    expect(h).toMatchObject({ pgMajor: 15, timeline: 1, segmentSize: 1 << 20, blockSize: 8192 });
    expect(h.systemIdentifier).toBe('18446744073709551615');
    expect(h.pageAddress).toBe(3n << 20n);
  });

  it('accepts a segment that matches its name', () => {
    expect(validateSegment(parseWalName(name), syntheticSegment({ name }))).toMatchObject({ timeline: 1 });
  });

  it('accepts an older timeline in the header (first segment after a switch)', () => {
    const n = '000000020000000000000003';
    expect(validateSegment(parseWalName(n), syntheticSegment({ name: n, headerTimeline: 1 })).timeline).toBe(1);
  });

  it('rejects a later timeline in the header than in the name', () => {
    expect(() => validateSegment(parseWalName(name), syntheticSegment({ name, headerTimeline: 2 }))).toThrow(/timeline 2/);
  });

  it('rejects a renamed segment (page address differs from the name)', () => {
    const seg = syntheticSegment({ name: '000000010000000000000004' });
    expect(() => validateSegment(parseWalName(name), seg)).toThrow(/renamed or is a recycled/);
  });

  it('rejects a truncated segment', () => {
    const seg = syntheticSegment({ name }).subarray(0, 512 * 1024);
    expect(() => validateSegment(parseWalName(name), seg)).toThrow(/truncated/);
  });

  it('rejects non-WAL bytes and damaged headers', () => {
    expect(() => parseLongHeader(Buffer.from('hello'))).toThrow(InvalidWalHeaderError);
    expect(() => parseLongHeader(Buffer.alloc(1 << 20))).toThrow(/magic/);
    const noLong = syntheticSegment({ name });
    noLong.writeUInt16LE(0, 2);
    expect(() => parseLongHeader(noLong)).toThrow(/long header/);
    const badSize = syntheticSegment({ name });
    badSize.writeUInt32LE(3 << 20, 32);
    expect(() => parseLongHeader(badSize)).toThrow(/segment size/);
  });

  it('reports an unknown but plausible magic without a version', () => {
    expect(parseLongHeader(syntheticSegment({ name, magic: 0xd150 })).pgMajor).toBeUndefined();
  });
});
