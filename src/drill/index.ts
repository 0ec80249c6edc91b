export { runDrill, type DrillOptions } from './run.js';
export { renderReport, type DrillReport, type DrillOutcome } from './report.js';
export { DrillCouldNotRunError, DrillFailedError, WalMissingError } from './errors.js';
