import { createContext } from 'preact';
import { useContext } from 'preact/hooks';
import type { Live } from './live.ts';
import type { Viewer } from './types.ts';

export interface Session {
  key: string;
  viewer: Viewer;
  live: Live | null;
  /** Local changes (this tab's mutations) that other panels may reflect, e.g. the audit trail. */
  changed: () => void;
  changes: number;
}

export const SessionContext = createContext<Session | null>(null);

export function useSession(): Session {
  const session = useContext(SessionContext);
  if (!session) throw new Error('useSession outside a signed-in page');
  return session;
}
