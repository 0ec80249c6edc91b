declare const WALSHIP_BUILD_VERSION: string | undefined;

/** Injected by the bundler (scripts/build.mjs); 'dev' when run from source. */
export const VERSION: string = typeof WALSHIP_BUILD_VERSION === 'string' ? WALSHIP_BUILD_VERSION : 'dev';
export const CREATED_BY = `walship/${VERSION}`;
