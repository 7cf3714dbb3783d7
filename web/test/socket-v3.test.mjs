// socket.io-client v3 (3.1.3, Engine.IO v4 like v4 but its own client code)
// against the built binary: the shared client suite (lib/client-suite.mjs).
import { io } from 'socket.io-client-v3';
import { clientSuite } from './lib/client-suite.mjs';

clientSuite({ io, label: 'socket.io-client v3' });
