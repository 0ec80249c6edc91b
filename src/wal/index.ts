export { parseWalName, isWalName, InvalidWalNameError, timelineHex, segmentName, segmentNumber } from './names.js';
export type { WalFileName, WalFileKind } from './names.js';
export { parseLongHeader, InvalidWalHeaderError } from './header.js';
export type { WalSegmentHeader } from './header.js';
export { validateSegment, validateSegmentStart, lsn } from './validate.js';
export { readControlSystemIdentifier } from './control.js';
