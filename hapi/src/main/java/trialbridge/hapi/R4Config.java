package trialbridge.hapi;

import ca.uhn.fhir.jpa.config.r4.JpaR4Config;
import org.springframework.context.annotation.Configuration;
import org.springframework.context.annotation.Import;

/** FHIR R4 DAOs and resource providers; chosen by {@link HapiServer#main}. */
@Configuration
@Import(JpaR4Config.class)
public class R4Config {}
