/**
 * Where the key is kept while the tab is open: sessionStorage only, so it goes with the tab and
 * never travels in a URL, a cookie or localStorage.
 */
const STORAGE_KEY = 'tenantgate.apiKey';

export function storedKey(): string | null {
  try {
    return sessionStorage.getItem(STORAGE_KEY);
  } catch {
    return null;
  }
}

export function storeKey(key: string): void {
  sessionStorage.setItem(STORAGE_KEY, key);
}

export function forgetKey(): void {
  sessionStorage.removeItem(STORAGE_KEY);
}
