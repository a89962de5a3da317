// Log in with an API key (godel_sk_..., checked with AuthService.Authenticate) or with a user's
// name and password (AuthService.Login: a JWT access token and a refresh token).
import { useState } from "preact/hooks";
import { Field } from "./field.js";
import { errorText } from "./format.js";
import { loginWithPassword, open, type Session } from "./session.js";

export function Login(props: { onLogin: (session: Session) => void }) {
  const [apiKey, setApiKey] = useState("");
  const [username, setUsername] = useState("");
  const [password, setPassword] = useState("");
  const [error, setError] = useState("");
  const attempt = async (e: SubmitEvent, how: () => Promise<Session>) => {
    e.preventDefault();
    setError("");
    try {
      props.onLogin(await how());
    } catch (err) {
      setError(errorText(err));
    }
  };
  return (
    <section class="login">
      <h2>Log in to Godel</h2>
      {error && <p class="error">{error}</p>}
      <form id="login-key" onSubmit={(e) => attempt(e, () => open({ apiKey: apiKey.trim() }))}>
        <label>
          API key
          <Field name="apiKey" secret autocomplete="off" placeholder="godel_sk_…" value={apiKey} set={setApiKey} required />
        </label>
        <button type="submit">Log in with key</button>
      </form>
      <p class="or">or</p>
      <form id="login-password" onSubmit={(e) => attempt(e, () => loginWithPassword(username.trim(), password))}>
        <label>
          User
          <Field name="username" autocomplete="username" value={username} set={setUsername} required />
        </label>
        <label>
          Password
          <Field name="password" secret autocomplete="current-password" value={password} set={setPassword} required />
        </label>
        <button type="submit">Log in</button>
      </form>
    </section>
  );
}
