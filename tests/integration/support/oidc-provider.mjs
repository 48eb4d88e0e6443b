// A real OpenID Connect provider on loopback for the single-sign-on tests:
// npm's `oidc-provider` (installed by scripts/test.sh into
// target/oidc-provider), one client, the users given, PKCE required, the
// development login form (any password), consent granted without asking.
//
// node oidc-provider.mjs PORT CLIENT_ID CLIENT_SECRET REDIRECT_URI USERS_JSON
// USERS_JSON: {"alice": {"email": "...", "groups": ["..."]}, ...}
// Prints "ready" once listening; stops when its standard input closes.

import { createRequire } from 'node:module';

const [port, clientId, clientSecret, redirectUri, usersJson] = process.argv.slice(2);
const require = createRequire(process.env.OIDC_PROVIDER_DIR + '/');
const { default: Provider } = await import(require.resolve('oidc-provider'));
const users = JSON.parse(usersJson);

const configuration = {
  clients: [{
    client_id: clientId,
    client_secret: clientSecret,
    redirect_uris: [redirectUri],
    // RP-initiated logout comes back to the console's root.
    post_logout_redirect_uris: [new URL('/', redirectUri).href],
    response_types: ['code'],
    grant_types: ['authorization_code'],
    token_endpoint_auth_method: 'client_secret_basic',
  }],
  pkce: { required: () => true },
  claims: { openid: ['sub'], email: ['email', 'email_verified'], profile: ['name', 'groups'] },
  // The scopes' claims in the ID token itself, not only at userinfo.
  conformIdTokenClaims: false,
  features: { devInteractions: { enabled: true } },
  cookies: { keys: ['cpi-test-cookie-key-0123456789abcdef'] },
  async findAccount(ctx, id) {
    const u = users[id];
    if (!u) return undefined;
    return {
      accountId: id,
      async claims() {
        return { sub: id, email: u.email, email_verified: true, name: id, groups: u.groups };
      },
    };
  },
  // A first-party client: consent is granted without asking.
  async loadExistingGrant(ctx) {
    const grantId = ctx.oidc.result?.consent?.grantId
      || ctx.oidc.session.grantIdFor(ctx.oidc.client.clientId);
    if (grantId) return ctx.oidc.provider.Grant.find(grantId);
    const grant = new ctx.oidc.provider.Grant({
      clientId: ctx.oidc.client.clientId,
      accountId: ctx.oidc.session.accountId,
    });
    grant.addOIDCScope('openid email profile');
    await grant.save();
    return grant;
  },
};

const provider = new Provider(`http://127.0.0.1:${port}`, configuration);
const server = provider.listen(Number(port), '127.0.0.1', () => console.log('ready'));
process.stdin.resume();
process.stdin.on('end', () => { server.close(); process.exit(0); });
