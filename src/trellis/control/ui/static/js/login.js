// The login form: the token goes once, as a bearer header, to POST /api/v1/session,
// which answers with the session cookie. The token is not stored by this page.
const form = document.getElementById("login");
const error = document.getElementById("login-error");

form.addEventListener("submit", async (event) => {
  event.preventDefault();
  error.textContent = "";
  const token = form.elements.token.value.trim();
  const answer = await fetch("/api/v1/session", {
    method: "POST",
    headers: { Authorization: `Bearer ${token}` },
    credentials: "same-origin",
  });
  if (answer.status === 204) {
    window.location.assign("/ui/");
    return;
  }
  let reason = `HTTP ${answer.status}`;
  try {
    reason = (await answer.json()).error || reason;
  } catch (_) { /* not JSON */ }
  error.textContent = `Refused: ${reason}`;
});
