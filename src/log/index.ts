export { createLogger, setOutputStyle } from './logger.js';
export type { OutputStyle } from './logger.js';
export type { Logger } from './logger.js';
