// A client generated from keyledger's /schema (openapi-typescript types + openapi-fetch), type-checked
// with tsc --strict and run against a real server by tests/e2e/test_openapi_codegen.py.
import createClient from "openapi-fetch";
import type { paths } from "./keyledger.js";

declare const process: { env: Record<string, string | undefined>; exit(code: number): never };

const [baseUrl, admin] = [process.env.KEYLEDGER_URL ?? "", process.env.KEYLEDGER_ADMIN ?? ""];
const client = createClient<paths>({ baseUrl });
const auth = { "x-api-key": admin };

async function main(): Promise<void> {
  const made = await client.POST("/v1/keys", {
    headers: auth,
    body: { name: "from typescript", organization_id: "org-ts",
            access: [{ resource: "website", id: "site-a", scopes: ["read:data"] }] },
  });
  if (made.data === undefined) throw new Error(`create: ${JSON.stringify(made.error)}`);
  const key = made.data;
  const verified = await client.POST("/v1/verify", {
    headers: auth, body: { key: key.secret, scope: "read:data", website_id: "site-a" },
  });
  const other = await client.POST("/v1/verify", {
    headers: auth, body: { key: key.secret, scope: "read:data", website_id: "site-b" },
  });
  const changed = await client.PATCH("/v1/keys/{key_id}", {
    params: { path: { key_id: key.id }, header: { "If-Match": `"${key.version}"` } },
    headers: auth, body: { name: "renamed from typescript" },
  });
  const stale = await client.PATCH("/v1/keys/{key_id}", {
    params: { path: { key_id: key.id }, header: { "If-Match": `"${key.version}"` } },
    headers: auth, body: { name: "lost update" },
  });
  const page = await client.GET("/v1/keys", { params: { query: { limit: 10 } }, headers: auth });
  const gateway = await client.GET("/v1/forward-auth", {
    params: { query: { scope: "read:data", website_id: "site-a" } },
    headers: { "x-api-key": key.secret, "X-Keyledger-Caller": admin },
  });
  console.log(JSON.stringify({
    key_id: key.id,
    verify: { valid: verified.data?.valid, code: verified.data?.code, key_id: verified.data?.key_id,
              granted_by: verified.data?.granted_by, remaining: verified.data?.ratelimit?.remaining },
    other: other.data?.code,
    changed: { name: changed.data?.name, version: changed.data?.version, etag: changed.response.headers.get("etag") },
    stale: { status: stale.response.status, code: stale.error?.code },
    listed: page.data?.items.map((item) => item.id).includes(key.id),
    forward_auth: { status: gateway.response.status, key_id: gateway.response.headers.get("x-keyledger-key-id") },
  }));
}

main().catch((error: unknown) => { console.error(error); process.exit(1); });
