export { ChildJobs, type ChildCommand, type JobLine } from './run-jobs.js';
export { serveOneJob, refuseJob, reportError } from './serve-job.js';
export { spreadJobs, type Offload, type SpreadOptions } from './spread.js';
