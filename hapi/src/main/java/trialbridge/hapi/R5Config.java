package trialbridge.hapi;

import ca.uhn.fhir.jpa.config.r5.JpaR5Config;
import org.springframework.context.annotation.Configuration;
import org.springframework.context.annotation.Import;

/** FHIR R5 DAOs and resource providers; chosen by {@link HapiServer#main}. */
@Configuration
@Import(JpaR5Config.class)
public class R5Config {}
