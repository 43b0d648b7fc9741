import { useCallback, useEffect, useMemo, useRef, useState } from 'preact/hooks';
import { AdminView } from './admin.tsx';
import { ApiError, gql, messageOf } from './api.ts';
import { AuditPanel } from './audit.tsx';
import { KeysPanel } from './keys.tsx';
import { startLive, type Live, type LiveState } from './live.ts';
import { ModulesPanel } from './modules.tsx';
import { forgetKey, storedKey, storeKey } from './session.ts';
import { SessionContext, type Session } from './session-context.ts';
import type { Viewer } from './types.ts';
import { Announce } from './ui.tsx';
import { UsagePanel } from './usage.tsx';

const VIEWER = `query DashboardViewer {
  viewer { scopes org { id name status suspendReason suspendedAt createdAt } apiKey { id name prefix expiresAt } }
}`;

type View = 'org' | 'operator';

/** How long a status message stays on screen (it was read out when it appeared). */
const STATUS_SHOWN_MS = 8_000;

export function App() {
  const [signedIn, setSignedIn] = useState<{ key: string; viewer: Viewer } | null>(null);
  const [restoring, setRestoring] = useState(() => storedKey() !== null);
  const [signInProblem, setSignInProblem] = useState<string | null>(null);
  const [status, setStatus] = useState('');
  const statusTimer = useRef<ReturnType<typeof setTimeout> | undefined>(undefined);

  const announce = useCallback((message: string) => {
    // Cleared first, so the same message twice is heard twice.
    setStatus('');
    clearTimeout(statusTimer.current);
    statusTimer.current = setTimeout(() => {
      setStatus(message);
      statusTimer.current = setTimeout(() => setStatus(''), STATUS_SHOWN_MS);
    }, 30);
  }, []);

  const signIn = useCallback(async (key: string) => {
    try {
      const { viewer } = await gql<{ viewer: Viewer }>(key, VIEWER);
      storeKey(key);
      setSignInProblem(null);
      setSignedIn({ key, viewer });
      return true;
    } catch (failure) {
      if (failure instanceof ApiError && failure.code === 'UNAUTHENTICATED') forgetKey();
      setSignInProblem(messageOf(failure));
      return false;
    }
  }, []);

  // A key kept from earlier in this tab signs in again after a reload.
  useEffect(() => {
    const key = storedKey();
    if (key === null) return;
    void signIn(key).finally(() => setRestoring(false));
  }, [signIn]);

  const signOut = useCallback(() => {
    forgetKey();
    setSignedIn(null);
    announce('Signed out: the key is forgotten.');
  }, [announce]);

  return (
    <Announce.Provider value={announce}>
      <a class="skip" href="#main">
        Skip to content
      </a>
      {signedIn ? (
        <SignedIn key={signedIn.key} apiKey={signedIn.key} viewer={signedIn.viewer} onSignOut={signOut} />
      ) : restoring ? (
        <main id="main" class="sign-in">
          <p class="muted">Signing in with the key kept in this tab…</p>
        </main>
      ) : (
        <SignIn problem={signInProblem} onSubmit={signIn} />
      )}
      <div class="status" role="status" aria-live="polite" aria-atomic="true">
        {status}
      </div>
    </Announce.Provider>
  );
}

function SignIn(props: { problem: string | null; onSubmit: (key: string) => Promise<boolean> }) {
  const [value, setValue] = useState('');
  const [busy, setBusy] = useState(false);
  const field = useRef<HTMLInputElement>(null);
  useEffect(() => field.current?.focus(), []);
  return (
    <>
      <header class="top">
        <span class="brand">tenantgate</span>
      </header>
      <main id="main" class="sign-in">
        <h1>Sign in to the dashboard</h1>
        <form
          onSubmit={async (event) => {
            event.preventDefault();
            const key = value.trim();
            if (key === '') return;
            setBusy(true);
            const ok = await props.onSubmit(key);
            setBusy(false);
            if (ok) setValue('');
            else field.current?.focus();
          }}
        >
          <label for="api-key">API key</label>
          <input
            id="api-key"
            ref={field}
            type="password"
            value={value}
            autocomplete="off"
            spellcheck={false}
            aria-describedby="api-key-help"
            aria-invalid={props.problem ? true : undefined}
            onInput={(e) => setValue(e.currentTarget.value)}
          />
          <p id="api-key-help" class="muted small">
            A key of your org (tgk_…). It is kept in this tab's session storage only, and forgotten when you sign out or close the tab.
          </p>
          {props.problem ? (
            <p class="note note-error" role="alert">
              {props.problem}
            </p>
          ) : null}
          <button type="submit" class="primary" disabled={busy}>
            Sign in
          </button>
        </form>
      </main>
    </>
  );
}

const LIVE_TEXT: Record<LiveState, string> = { connecting: 'Connecting', live: 'Live', offline: 'Offline' };

function LiveIndicator(props: { live: Live }) {
  const [state, setState] = useState<LiveState>(props.live.current());
  useEffect(() => {
    setState(props.live.current());
    return props.live.state.listen(setState);
  }, [props.live]);
  const title =
    state === 'live' ? 'Updates arrive as they happen' : state === 'connecting' ? 'Connecting to live updates' : 'Live updates are off; retrying. Refresh a panel to see changes.';
  return (
    <span class={`live live-${state}`} title={title} data-live={state}>
      <span class="live-dot" aria-hidden="true" />
      {LIVE_TEXT[state]}
      <span class="sr-only">: {title}</span>
    </span>
  );
}

function SignedIn(props: { apiKey: string; viewer: Viewer; onSignOut: () => void }) {
  const { viewer, apiKey } = props;
  const admin = viewer.scopes.includes('admin');
  const [view, setView] = useState<View>(admin ? 'operator' : 'org');
  const [live, setLive] = useState<Live | null>(null);
  const [changes, setChanges] = useState(0);
  const changed = useCallback(() => setChanges((n) => n + 1), []);

  useEffect(() => {
    const started = startLive(apiKey, viewer.scopes);
    setLive(started);
    return () => started?.stop();
  }, [apiKey, viewer]);

  const session = useMemo<Session>(() => ({ key: apiKey, viewer, live, changed, changes }), [apiKey, viewer, live, changed, changes]);
  const heading = useRef<HTMLHeadingElement>(null);
  const choose = (next: View) => {
    setView(next);
    setTimeout(() => heading.current?.focus(), 0);
  };

  return (
    <SessionContext.Provider value={session}>
      <header class="top">
        <span class="brand">tenantgate</span>
        <dl class="who">
          <div>
            <dt>Org</dt>
            <dd>
              {viewer.org.name} <span class="muted mono">({viewer.org.id})</span>
            </dd>
          </div>
          <div>
            <dt>Key</dt>
            <dd>
              {viewer.apiKey.name} <span class="muted mono">{viewer.apiKey.prefix}…</span>
            </dd>
          </div>
          <div>
            <dt>Scopes</dt>
            <dd class="small">{viewer.scopes.join(', ')}</dd>
          </div>
        </dl>
        {live ? <LiveIndicator live={live} /> : null}
        <button type="button" class="sign-out" onClick={props.onSignOut}>
          Sign out
        </button>
      </header>
      {admin ? (
        <nav class="views" aria-label="Views">
          <button type="button" aria-current={view === 'operator' ? 'page' : undefined} onClick={() => choose('operator')}>
            Operator
          </button>
          <button type="button" aria-current={view === 'org' ? 'page' : undefined} onClick={() => choose('org')}>
            Org {viewer.org.id}
          </button>
        </nav>
      ) : null}
      <main id="main" class="content">
        <h1 ref={heading} tabIndex={-1}>
          {view === 'operator' ? 'Operator view' : viewer.org.name}
        </h1>
        {view === 'operator' ? (
          <AdminView />
        ) : (
          <div class="grid">
            <UsagePanel />
            <ModulesPanel />
            <KeysPanel />
            <AuditPanel />
          </div>
        )}
      </main>
    </SessionContext.Provider>
  );
}
