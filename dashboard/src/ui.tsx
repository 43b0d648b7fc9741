import { createContext, type ComponentChildren } from 'preact';
import { useCallback, useContext, useEffect, useRef, useState } from 'preact/hooks';
import { ApiError, messageOf } from './api.ts';
import type { HealthStatus } from './types.ts';

/** Status messages for the page's one live region (role="status"), so screen readers hear them. */
export const Announce = createContext<(message: string) => void>(() => {});
export const useAnnounce = () => useContext(Announce);

export function Panel(props: { id: string; title: string; actions?: ComponentChildren; children: ComponentChildren }) {
  return (
    <section class="panel" aria-labelledby={`${props.id}-title`} id={props.id}>
      <header class="panel-head">
        <h2 id={`${props.id}-title`}>{props.title}</h2>
        {props.actions ? <div class="panel-actions">{props.actions}</div> : null}
      </header>
      {props.children}
    </section>
  );
}

/**
 * A panel over one loaded list: its Refresh button, then the list's error, a loading line or an
 * empty line; the rows are the children.
 */
export function ListPanel<T>(props: {
  id: string;
  title: string;
  list: Loaded<T>;
  /** What Refresh reloads (default: the list). */
  reload?: () => Promise<unknown>;
  loading: string;
  empty?: { when: (data: T) => boolean; text: string };
  children: ComponentChildren;
}) {
  const { list } = props;
  return (
    <Panel
      id={props.id}
      title={props.title}
      actions={
        <button type="button" onClick={() => void (props.reload ?? list.reload)()} disabled={list.loading}>
          Refresh
        </button>
      }
    >
      {list.error ? <ErrorNote error={list.error} /> : null}
      {!list.data && !list.error ? <p class="muted">{props.loading}</p> : null}
      {list.data !== undefined && props.empty?.when(list.data) ? <p class="muted">{props.empty.text}</p> : null}
      {props.children}
    </Panel>
  );
}

/** Under a list: how much of it is shown, and the button for the next page when there is one. */
export function Pager(props: { showing: string; more?: { label: string; onClick: () => unknown; disabled?: boolean } }) {
  return (
    <p class="pager">
      <span>{props.showing}</span>
      {props.more ? (
        <button type="button" onClick={() => void props.more!.onClick()} disabled={props.more.disabled}>
          {props.more.label}
        </button>
      ) : null}
    </p>
  );
}

/** A form's refusal, read out as it appears. */
export function Problem(props: { text: string | undefined | null }) {
  return props.text ? (
    <p class="note note-error" role="alert">
      {props.text}
    </p>
  ) : null;
}

/** A panel's failure: a missing scope reads as such, not as a broken page. */
export function ErrorNote(props: { error: unknown }) {
  const forbidden = props.error instanceof ApiError && props.error.code === 'FORBIDDEN';
  return (
    <p class={forbidden ? 'note note-forbidden' : 'note note-error'} role="alert">
      {messageOf(props.error)}
    </p>
  );
}

export interface Loaded<T> {
  data: T | undefined;
  error: unknown;
  loading: boolean;
  reload: () => Promise<void>;
  set: (update: (previous: T | undefined) => T | undefined) => void;
}

/** Loads once, and again on reload(); the panel keeps showing its data while reloading. */
export function useLoad<T>(load: () => Promise<T>, deps: readonly unknown[]): Loaded<T> {
  const [data, setData] = useState<T | undefined>(undefined);
  const [error, setError] = useState<unknown>(undefined);
  const [loading, setLoading] = useState(true);
  const generation = useRef(0);
  const reload = useCallback(async () => {
    const mine = ++generation.current;
    setLoading(true);
    try {
      const value = await load();
      if (mine !== generation.current) return;
      setData(value);
      setError(undefined);
    } catch (failure) {
      if (mine !== generation.current) return;
      setError(failure);
    } finally {
      if (mine === generation.current) setLoading(false);
    }
  }, deps);
  useEffect(() => {
    void reload();
  }, [reload]);
  return { data, error, loading, reload, set: setData };
}

/** Runs an action, announces how it went, and reports failures in the live region. */
export function useAction() {
  const announce = useAnnounce();
  const [busy, setBusy] = useState(false);
  const run = useCallback(
    async (action: () => Promise<string | void>): Promise<boolean> => {
      setBusy(true);
      try {
        const done = await action();
        if (done) announce(done);
        return true;
      } catch (failure) {
        announce(messageOf(failure));
        return false;
      } finally {
        setBusy(false);
      }
    },
    [announce],
  );
  return { busy, run };
}

const dateTime = new Intl.DateTimeFormat('en-GB', { dateStyle: 'medium', timeStyle: 'short', timeZone: 'UTC' });
const dateOnly = new Intl.DateTimeFormat('en-GB', { day: 'numeric', month: 'short', timeZone: 'UTC' });
const whole = new Intl.NumberFormat('en-GB', { maximumFractionDigits: 0 });

export function formatTime(iso: string | null | undefined, never = 'never'): string {
  if (!iso) return never;
  return `${dateTime.format(new Date(iso))} UTC`;
}

export function formatDay(iso: string): string {
  return dateOnly.format(new Date(iso));
}

export function formatNumber(value: number): string {
  return whole.format(value);
}

export function Time(props: { at: string | null | undefined; never?: string }) {
  if (!props.at) return <span class="muted">{props.never ?? 'never'}</span>;
  return <time dateTime={props.at}>{formatTime(props.at)}</time>;
}

const HEALTH_LABEL: Record<HealthStatus, string> = {
  HEALTHY: 'Healthy',
  DEGRADED: 'Degraded',
  UNHEALTHY: 'Unhealthy',
  UNKNOWN: 'Unknown',
};

export function HealthBadge(props: { status: HealthStatus }) {
  return <span class={`badge health-${props.status.toLowerCase()}`}>{HEALTH_LABEL[props.status]}</span>;
}

/** Moves focus once the next render is on screen (after a panel opens or closes). */
export function focusSoon(selector: string): void {
  setTimeout(() => document.querySelector<HTMLElement>(selector)?.focus(), 0);
}

/** Copies text, or selects it for the user to copy where the clipboard is not available. */
export function CopyButton(props: { text: string; target: string; label: string }) {
  const announce = useAnnounce();
  const copy = async () => {
    try {
      await navigator.clipboard.writeText(props.text);
      announce('Copied to the clipboard.');
    } catch {
      const field = document.getElementById(props.target);
      if (field instanceof HTMLInputElement) {
        field.focus();
        field.select();
      }
      announce('Could not reach the clipboard: the text is selected, press Ctrl+C to copy it.');
    }
  };
  return (
    <button type="button" onClick={() => void copy()}>
      {props.label}
    </button>
  );
}

/**
 * A destructive action in two steps, both plain buttons: the first asks, the second does it.
 * Focus moves to the confirming button, and back to the first one on cancel.
 */
export function ConfirmButton(props: { label: string; confirm: string; disabled?: boolean; onConfirm: () => void | Promise<unknown> }) {
  const [asking, setAsking] = useState(false);
  const confirmRef = useRef<HTMLButtonElement>(null);
  const askRef = useRef<HTMLButtonElement>(null);
  const wasAsking = useRef(false);
  useEffect(() => {
    if (asking) confirmRef.current?.focus();
    else if (wasAsking.current) askRef.current?.focus();
    wasAsking.current = asking;
  }, [asking]);
  if (!asking) {
    return (
      <button type="button" ref={askRef} class="danger-quiet" disabled={props.disabled} onClick={() => setAsking(true)}>
        {props.label}
      </button>
    );
  }
  return (
    <span class="confirm">
      <button
        type="button"
        ref={confirmRef}
        class="danger"
        disabled={props.disabled}
        onClick={async () => {
          await props.onConfirm();
          setAsking(false);
        }}
      >
        {props.confirm}
      </button>
      <button type="button" onClick={() => setAsking(false)}>
        Cancel
      </button>
    </span>
  );
}
