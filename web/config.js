// Deployment settings for the web page, read before app.js. On a static host, replace this
// file; the MMT server generates it from WEB_API_BASE_URL and WEB_PRODUCTION_API_BASE_URL.
//   window.__MMT_CONFIG = { API_BASE_URL: "https://api.example.org",
//                           PRODUCTION_API_BASE_URL: "https://api.example.org" };
window.__MMT_CONFIG = window.__MMT_CONFIG || {};
