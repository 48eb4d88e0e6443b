// The console's pages, by family. Each takes the <main> element and its
// route parameters, fetches what it shows and builds it; the router
// re-runs live pages every few seconds.

export { overview, connections, connectionNew, connection } from './connections.js';
export { projects, projectNew, project } from './projects.js';
export { jobs, job, reconcile, run } from './jobs.js';
export { audit, events } from './trail.js';
