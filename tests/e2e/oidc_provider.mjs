// A real OpenID Connect authorization server for the end-to-end tests: the npm package oidc-provider.
//
// One confidential client (client_secret_basic, PKCE required), the runner's callback as its only
// redirect URI, `iss` in every authorization response (RFC 9207; built into oidc-provider 9), refresh
// tokens for offline_access granted with prompt=consent, and its development login/consent pages
// (e-mail in the ID token, or at userinfo only with OIDC_EMAIL_AT_USERINFO_ONLY=1).
// Settings come from the environment; it prints one line, "listening <issuer>", once it serves.
import { randomBytes } from 'node:crypto';

import Provider from 'oidc-provider';

const port = Number(process.env.OIDC_PORT);
const issuer = `http://127.0.0.1:${port}`;
const clientId = process.env.OIDC_CLIENT_ID;
const clientSecret = process.env.OIDC_CLIENT_SECRET;
const redirectUri = process.env.OIDC_REDIRECT_URI;
if (!port || !clientId || !clientSecret || !redirectUri) {
  console.error('OIDC_PORT, OIDC_CLIENT_ID, OIDC_CLIENT_SECRET and OIDC_REDIRECT_URI are required');
  process.exit(2);
}

// What the token endpoint did, so a test can prove a code was redeemed once and only once.
const counts = { grantSuccess: 0, grantError: 0, refreshTokensDestroyed: 0 };

const provider = new Provider(issuer, {
  clients: [
    {
      client_id: clientId,
      client_secret: clientSecret,
      redirect_uris: [redirectUri],
      response_types: ['code'],
      grant_types: ['authorization_code', 'refresh_token'],
      token_endpoint_auth_method: 'client_secret_basic',
    },
  ],
  pkce: { required: () => true },
  scopes: ['openid', 'offline_access', 'email', 'calendar'],
  claims: { openid: ['sub'], email: ['email', 'email_verified'] },
  // OIDC_EMAIL_AT_USERINFO_ONLY=1: the ID token carries only `sub`; scope claims (email) come from userinfo
  // alone, as OpenID Connect Core 5.4 allows a provider to do.
  conformIdTokenClaims: process.env.OIDC_EMAIL_AT_USERINFO_ONLY === '1',
  features: {
    devInteractions: { enabled: true },
    revocation: { enabled: true },
    userinfo: { enabled: true },
  },
  cookies: { keys: [randomBytes(32).toString('base64url')] },
  async findAccount(_ctx, accountId) {
    return {
      accountId,
      async claims() {
        return { sub: accountId, email: `${accountId}@oidc.test`, email_verified: true };
      },
    };
  },
});

provider.on('grant.success', () => { counts.grantSuccess += 1; });
provider.on('grant.error', () => { counts.grantError += 1; });
// Revocation (RFC 7009) destroys the refresh token.
provider.on('refresh_token.destroyed', () => { counts.refreshTokensDestroyed += 1; });

provider.use(async (ctx, next) => {
  if (ctx.path === '/__e2e/counts') {
    ctx.body = counts;
    return;
  }
  await next();
});

const server = provider.listen(port, '127.0.0.1', () => {
  console.log(`listening ${issuer}`);
});

for (const signal of ['SIGINT', 'SIGTERM']) {
  process.on(signal, () => server.close(() => process.exit(0)));
}
