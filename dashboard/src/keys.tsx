import { useState } from 'preact/hooks';
import { gql } from './api.ts';
import { useSession } from './session-context.ts';
import type { ApiKey } from './types.ts';
import { ConfirmButton, CopyButton, ErrorNote, focusSoon, Panel, Problem, Time, useAction, useLoad } from './ui.tsx';

const KEY_FIELDS = 'id name prefix scopes createdAt lastUsedAt expiresAt revokedAt';
const KEYS = `query DashboardKeys { apiKeys { ${KEY_FIELDS} } }`;
const CREATE = `mutation DashboardCreateKey($input: CreateApiKeyInput!) { createApiKey(input: $input) { secret apiKey { ${KEY_FIELDS} } } }`;
const REVOKE = `mutation DashboardRevokeKey($id: ID!) { revokeApiKey(id: $id) { ${KEY_FIELDS} } }`;

function state(key: ApiKey, now: number): string {
  if (key.revokedAt) return 'Revoked';
  if (key.expiresAt && Date.parse(key.expiresAt) <= now) return 'Expired';
  return 'Active';
}

export function KeysPanel() {
  const { key, viewer, changed } = useSession();
  const { run, busy } = useAction();
  const [created, setCreated] = useState<{ name: string; secret: string } | null>(null);
  const keys = useLoad(async () => (await gql<{ apiKeys: ApiKey[] }>(key, KEYS, undefined, 'keys:manage')).apiKeys, [key]);
  const now = Date.now();

  const revoke = (target: ApiKey) =>
    run(async () => {
      const data = await gql<{ revokeApiKey: ApiKey }>(key, REVOKE, { id: target.id }, 'keys:manage');
      keys.set((all) => all?.map((k) => (k.id === target.id ? data.revokeApiKey : k)));
      changed();
      return `The key ${target.name} is revoked.`;
    });

  return (
    <Panel id="keys" title="API keys">
      {keys.error ? <ErrorNote error={keys.error} /> : null}
      {!keys.data && !keys.error ? <p class="muted">Loading keys…</p> : null}
      {created ? (
        <div class="secret-once">
          <label id="new-secret-label" for="new-secret">
            The secret of {created.name}: copy it now, it is shown this once
          </label>
          <div class="secret-row">
            <input id="new-secret" class="mono" readOnly value={created.secret} spellcheck={false} autocomplete="off" onFocus={(e) => e.currentTarget.select()} />
            <CopyButton text={created.secret} target="new-secret" label="Copy secret" />
            <button type="button" onClick={() => setCreated(null)}>
              Done
            </button>
          </div>
        </div>
      ) : null}
      {keys.data ? (
        <div class="table-wrap">
          <table class="keys">
            <caption class="sr-only">API keys of the org, revoked ones included</caption>
            <thead>
              <tr>
                <th scope="col">Key</th>
                <th scope="col">Scopes</th>
                <th scope="col">Last used</th>
                <th scope="col">Expires</th>
                <th scope="col">State</th>
                <th scope="col">
                  <span class="sr-only">Actions</span>
                </th>
              </tr>
            </thead>
            <tbody>
              {keys.data.map((k) => (
                <tr key={k.id} data-key={k.id} class={k.revokedAt ? 'revoked' : undefined}>
                  <th scope="row">
                    <span class="module-name">{k.name}</span>
                    <span class="muted mono">{k.prefix}…</span>
                    {k.id === viewer.apiKey.id ? <span class="badge you">this key</span> : null}
                  </th>
                  <td>
                    <ul class="scopes">
                      {k.scopes.map((s) => (
                        <li key={s}>{s}</li>
                      ))}
                    </ul>
                  </td>
                  <td>
                    <Time at={k.lastUsedAt} />
                  </td>
                  <td>
                    <Time at={k.expiresAt} />
                  </td>
                  <td>{state(k, now)}</td>
                  <td>
                    {!k.revokedAt && k.id !== viewer.apiKey.id ? (
                      <ConfirmButton label={`Revoke`} confirm={`Revoke ${k.name}`} disabled={busy} onConfirm={() => revoke(k)} />
                    ) : null}
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      ) : null}
      {keys.data ? (
        <CreateKeyForm
          onCreated={(apiKey, secret) => {
            keys.set((all) => [...(all ?? []), apiKey]);
            setCreated({ name: apiKey.name, secret });
            changed();
            // The secret field takes focus so it can be copied at once.
            focusSoon('#new-secret');
          }}
        />
      ) : null}
    </Panel>
  );
}

function CreateKeyForm(props: { onCreated: (key: ApiKey, secret: string) => void }) {
  const { key, viewer } = useSession();
  const { run, busy } = useAction();
  const grantable = viewer.scopes.filter((s) => s !== 'admin');
  const [name, setName] = useState('');
  const [scopes, setScopes] = useState<string[]>(grantable.filter((s) => s === 'modules:read'));
  const [expires, setExpires] = useState('');
  const [problem, setProblem] = useState<string | null>(null);

  const submit = async (event: Event) => {
    event.preventDefault();
    if (name.trim() === '') return setProblem('The key needs a name.');
    if (scopes.length === 0) return setProblem('Choose at least one scope.');
    setProblem(null);
    const expiresAt = expires ? new Date(`${expires}T00:00:00Z`).toISOString() : undefined;
    await run(async () => {
      const data = await gql<{ createApiKey: { secret: string; apiKey: ApiKey } }>(key, CREATE, { input: { name: name.trim(), scopes, expiresAt } }, 'keys:manage');
      setName('');
      setExpires('');
      props.onCreated(data.createApiKey.apiKey, data.createApiKey.secret);
      return `The key ${data.createApiKey.apiKey.name} is created: copy its secret now.`;
    });
  };

  return (
    <form class="create-key" onSubmit={(e) => void submit(e)} aria-labelledby="create-key-title">
      <h3 id="create-key-title">Create a key</h3>
      <div class="field">
        <label for="key-name">Name</label>
        <input id="key-name" value={name} autocomplete="off" onInput={(e) => setName(e.currentTarget.value)} />
      </div>
      <fieldset class="scope-choice">
        <legend>Scopes (only those this key holds)</legend>
        {grantable.map((scope) => (
          <label key={scope} class="check">
            <input
              type="checkbox"
              checked={scopes.includes(scope)}
              onChange={(e) => {
                const on = e.currentTarget.checked;
                setScopes((all) => (on ? [...all, scope] : all.filter((s) => s !== scope)));
              }}
            />
            {scope}
          </label>
        ))}
      </fieldset>
      <div class="field">
        <label for="key-expires">Expires on (optional, UTC)</label>
        <input id="key-expires" type="date" value={expires} onInput={(e) => setExpires(e.currentTarget.value)} />
      </div>
      <Problem text={problem} />
      <div class="form-actions">
        <button type="submit" class="primary" disabled={busy}>
          Create key
        </button>
      </div>
    </form>
  );
}
