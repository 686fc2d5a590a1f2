"""Smart charging (OCPP 2.0.1 functional block K): the profiles the cloud sets and the
stations report, the limits external systems impose on them, the EVs' charging needs,
and site limits that divide one grid connection among the transactions running there."""
