"""Background work that crosses domains, run by the portal process (`portal.web.app`).

- `balance_alerts.py`  a balance went below a threshold: the low-balance email
                       (`credits`) and the auto top-up (`billing`)
"""
