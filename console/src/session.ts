// Who is logged in: the credential (an API key, or the access and refresh tokens of a password
// login), the GodelClient that sends it, and what the caller's role allows. Kept in
// sessionStorage, so a reload stays logged in and closing the tab logs out.
import { GodelClient, UnauthenticatedError } from "@godel-ai/client";

export interface Credential {
  apiKey?: string;
  accessToken?: string;
  refreshToken?: string;
  /** ms since the epoch */
  expiresAt?: number;
}

export interface Session {
  client: GodelClient;
  credential: Credential;
  username: string;
  role: string;
  permissions: string[];
}

const STORE = "godel.console.credential";
const baseUrl = () => window.location.origin;

export function clientFor(credential: Credential): GodelClient {
  return new GodelClient({ baseUrl: baseUrl(), apiKey: credential.apiKey, bearerToken: credential.accessToken });
}

/** Checks the credential with the cluster service (AuthService.Authenticate) and keeps it. */
export async function open(credential: Credential): Promise<Session> {
  const client = clientFor(credential);
  const me = await client.auth.authenticate({});
  sessionStorage.setItem(STORE, JSON.stringify(credential));
  return { client, credential, username: me.username || me.userId, role: me.role, permissions: me.permissions };
}

export async function loginWithPassword(username: string, password: string): Promise<Session> {
  const reply = await clientFor({}).auth.login({ username, password });
  const expires = reply.expiresAt ? Number(reply.expiresAt.seconds) * 1000 : undefined;
  return open({ accessToken: reply.accessToken, refreshToken: reply.refreshToken, expiresAt: expires });
}

/** The session kept by an earlier login in this tab, refreshed when its access token expired. */
export async function resume(): Promise<Session | null> {
  const saved = sessionStorage.getItem(STORE);
  if (!saved) return null;
  let credential = JSON.parse(saved) as Credential;
  try {
    if (credential.refreshToken && credential.expiresAt && credential.expiresAt < Date.now() + 30_000) {
      credential = await refresh(credential);
    }
    return await open(credential);
  } catch (err) {
    if (!(err instanceof UnauthenticatedError)) throw err;
    sessionStorage.removeItem(STORE);
    return null;
  }
}

async function refresh(credential: Credential): Promise<Credential> {
  const reply = await clientFor({}).auth.refreshToken({ refreshToken: credential.refreshToken ?? "" });
  const expires = reply.expiresAt ? Number(reply.expiresAt.seconds) * 1000 : undefined;
  return { accessToken: reply.accessToken, refreshToken: reply.refreshToken, expiresAt: expires };
}

export async function logout(session: Session): Promise<void> {
  sessionStorage.removeItem(STORE);
  if (session.credential.refreshToken) {
    await session.client.auth.logout({ refreshToken: session.credential.refreshToken }).catch(() => undefined);
  }
}

/** Whether a permission "resource:action:scope" of the role grants `action` on `resource` (at
 * some scope: the services still check ownership of each object). */
export function can(session: Session, resource: string, action: string): boolean {
  return session.permissions.some((permission) => {
    const [r, a] = permission.split(":");
    return (r === "*" || r === resource) && (a === "*" || a === action);
  });
}
