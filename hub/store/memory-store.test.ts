import { MemoryStore } from './memory-store.js';
import { storeContract } from './store-contract.js';

storeContract('MemoryStore', (opts) => {
  const store = new MemoryStore(opts);
  return { store, cleanup: () => store.close() };
});
