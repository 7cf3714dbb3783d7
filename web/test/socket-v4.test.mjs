// socket.io-client v4 (4.8.1) against the built binary: the shared client
// suite (lib/client-suite.mjs).
import { io } from 'socket.io-client';
import { clientSuite } from './lib/client-suite.mjs';

clientSuite({ io, label: 'socket.io-client v4' });
