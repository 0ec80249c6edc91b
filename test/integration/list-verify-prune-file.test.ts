import { chownTreeToPostgres } from '../support/postgres-user.js';
import { fileArchive, keyfileEncryption } from '../support/walship.js';
import { describeArchiveCare, fileStoredAt } from './archive-care.js';

let dir = '';
describeArchiveCare({
  kind: 'file',
  makeArchive: async () => {
    const a = await fileArchive(await keyfileEncryption());
    dir = a.dir;
    return a;
  },
  setStoredAt: (key, when) => fileStoredAt(dir)(key, when),
  afterWrite: () => chownTreeToPostgres(dir),
});
