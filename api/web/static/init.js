// NHS.UK frontend's components (header menu, details...), from a file so the pages need no inline script
// under their Content-Security-Policy (api/headers.py).
import { initAll } from "./nhsuk/nhsuk-frontend.min.js";

initAll();
