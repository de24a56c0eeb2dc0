"""A service whose endpoint only valid keyledger keys reach (docs/python-client.md, "Python client and middleware").

    pip install ./clients/python litestar granian
    KEYLEDGER_URL=http://127.0.0.1:8080 KEYLEDGER_VERIFY_CREDENTIAL=klvc_... \
        granian --interface asgi --port 8000 examples.protected_service:app
    curl -H "x-api-key: kl_..." localhost:8000/websites/site-a/stats
"""
import os
from typing import Any

from litestar import Litestar, Request, get

from keyledger_client import AsyncKeyledger
from keyledger_client.litestar import KeyledgerPlugin, requires_key

keyledger = AsyncKeyledger(os.environ.get("KEYLEDGER_URL", "http://127.0.0.1:8080"),
                           os.environ["KEYLEDGER_VERIFY_CREDENTIAL"])


@get("/websites/{website_id:str}/stats", guards=[requires_key("read:data", website_id="website_id")])
async def stats(request: Request[Any, Any, Any]) -> dict[str, Any]:
    return {"website": request.path_params["website_id"], "key_id": request.state.keyledger.key_id}


app = Litestar([stats], plugins=[KeyledgerPlugin(keyledger)])
