"""The operator's window: ``contimg web`` (:mod:`contimg.web.app`), its logins (:mod:`contimg.web.auth`) and the
pictures it draws on request (:mod:`contimg.web.pictures`)."""
